import pandas as pd
import pytest

from rece_bench.data.filter import NO_FILTER, FilterConfig, apply_filter, filter_once
from rece_bench.errors import UserError


def frame(rows):
    return pd.DataFrame(rows, columns=["user", "item", "timestamp"])


def naive_one_pass(rows, min_item_users, min_user_items):
    """The filter written the obvious way, as the reference."""
    item_users = {}
    for user, item, _ in rows:
        item_users.setdefault(item, set()).add(user)
    rows = [r for r in rows if len(item_users[r[1]]) >= min_item_users]
    user_items = {}
    for user, item, _ in rows:
        user_items.setdefault(user, set()).add(item)
    return [r for r in rows if len(user_items[r[0]]) >= min_user_items]


def test_one_pass_counts_distinct_and_keeps_duplicates():
    # item 9 has two rows but one distinct user; user 1 repeats item 1 (kept, counted once).
    rows = [(1, 1, 0), (1, 1, 1), (1, 2, 2), (2, 1, 3), (2, 2, 4), (3, 9, 5), (3, 9, 6), (3, 1, 7)]
    out = filter_once(frame(rows), min_item_users=2, min_user_items=2)
    assert [tuple(r) for r in out.itertuples(index=False)] == [
        (1, 1, 0),
        (1, 1, 1),
        (1, 2, 2),
        (2, 1, 3),
        (2, 2, 4),
    ]


def test_one_pass_matches_the_naive_reference_and_is_not_a_k_core():
    rows = [(u, i, u * 10 + i) for u in range(30) for i in range(30) if (u * 7 + i * 3) % 5 < 2 or i < u % 4]
    for a, b in [(2, 3), (5, 6), (3, 10)]:
        got = apply_filter(frame(rows), FilterConfig(min_item_users=a, min_user_items=b))
        assert [tuple(r) for r in got.itertuples(index=False)] == naive_one_pass(rows, a, b)
    # A chain: item 3 loses its support once user 3 is dropped; only the k-core notices.
    rows = [(1, 1, 0), (1, 2, 0), (2, 1, 0), (2, 2, 0), (3, 3, 0), (4, 3, 0), (4, 1, 0), (4, 2, 0)]
    once = apply_filter(frame(rows), FilterConfig(min_item_users=2, min_user_items=2))
    core = apply_filter(frame(rows), FilterConfig(min_item_users=2, min_user_items=2, iterative=True))
    assert 3 in set(once["item"]) and 3 not in set(core["item"])


def test_no_filter_and_bad_settings():
    rows = frame([(1, 1, 0)])
    assert apply_filter(rows, NO_FILTER) is rows
    assert NO_FILTER.settings() == {"enabled": False}
    with pytest.raises(UserError, match="min_user_items"):
        FilterConfig(min_user_items=0)
