import numpy as np
import pandas as pd
import pytest

from rece_bench.data.split import SplitConfig, index_interactions, split_interactions
from rece_bench.errors import UserError


def interactions(rows):
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]).astype("int64")


def rows_of(frame, *columns):
    return [tuple(r) for r in frame[list(columns)].itertuples(index=False)]


def test_index_interactions_numbers_by_first_appearance_in_time_order():
    codes = pd.DataFrame({"user": [0, 0, 1, 1], "item": [2, 0, 1, 0], "timestamp": [5, 1, 3, 2]})
    indexed = index_interactions(codes, ["ua", "ub"], ["ia", "ib", "ic"])
    assert rows_of(indexed.frame, "user_id", "item_id", "timestamp") == [
        (1, 1, 1),
        (1, 2, 5),
        (2, 1, 2),
        (2, 3, 3),
    ]
    assert indexed.raw_users == ["ua", "ub"] and indexed.raw_items == ["ia", "ic", "ib"]


def test_temporal_split_follows_the_reference():
    rows = [(1, t % 6 + 1, t) for t in range(40)] + [(2, 1, 50), (2, 2, 51)]
    rows += [(3, 3, 100), (3, 4, 101), (3, 77, 101), (3, 5, 102), (3, 6, 103)]  # 77 is unknown to training
    # 47 timestamps; quantile(0.95, nearest) takes sorted index round(0.95 * 46) = 44, which is 101.
    split = split_interactions(interactions(rows), SplitConfig("temporal"))
    assert split.settings["threshold"] == 101
    assert set(split.train["user_id"]) == {1, 2}  # user 3 is active at or after T: never in training
    assert rows_of(split.test, "user_id", "item_id", "is_target") == [
        (3, 4, False),
        (3, 5, False),
        (3, 6, True),
    ]
    assert rows_of(split.valid, "user_id", "item_id", "is_target") == [(3, 4, False), (3, 5, True)]


def test_temporal_split_drops_users_with_fewer_than_three_known_items():
    rows = [(1, t % 6 + 1, t) for t in range(40)] + [(2, 1, 50), (2, 2, 51)]
    rows += [(3, 4, 101), (3, 77, 101), (3, 5, 102), (3, 6, 103), (4, 1, 101), (4, 88, 101)]
    split = split_interactions(interactions(rows), SplitConfig("temporal"))
    assert set(split.test["user_id"]) == {3} and split.settings["test_users_dropped"] == 1
    assert not {3, 4} & set(split.train["user_id"])


def test_temporal_split_on_a_bigger_case_against_a_naive_reference():
    rng = np.random.default_rng(0)
    frame = interactions(
        sorted(
            zip(
                rng.integers(1, 60, 3000),
                rng.integers(1, 80, 3000),
                rng.integers(0, 9_999, 3000),
                strict=True,
            )
        )
    )
    frame = frame.sort_values(["user_id", "timestamp"], kind="stable").reset_index(drop=True)
    split = split_interactions(frame, SplitConfig("temporal"))
    t = split.settings["threshold"]
    assert t == int(np.sort(frame["timestamp"].to_numpy())[round(0.95 * (len(frame) - 1))])
    late_users = set(frame.loc[frame["timestamp"] >= t, "user_id"])
    train = frame[~frame["user_id"].isin(late_users)]
    assert rows_of(split.train, "user_id", "item_id", "timestamp") == rows_of(train, "user_id", "item_id", "timestamp")
    known = set(train["item_id"])
    for user, seq in split.test.groupby("user_id"):
        history = frame[(frame["user_id"] == user) & (frame["timestamp"] >= t) & frame["item_id"].isin(known)]
        assert rows_of(seq, "item_id", "timestamp") == rows_of(history, "item_id", "timestamp")
        assert len(history) >= 3 and seq["is_target"].tolist() == [False] * (len(seq) - 1) + [True]
        valid = split.valid[split.valid["user_id"] == user]
        assert rows_of(valid, "item_id") == rows_of(history, "item_id")[:-1]
        assert valid["is_target"].tolist()[-1]
    assert not late_users & set(split.train["user_id"])
    assert set(split.valid["user_id"]) == set(split.test["user_id"])


def test_leave_one_out():
    rows = [(1, 1, 0), (1, 2, 1), (1, 3, 2), (1, 4, 3), (2, 5, 0), (2, 6, 1), (3, 7, 0), (3, 8, 1), (3, 9, 2)]
    split = split_interactions(interactions(rows), SplitConfig("loo"))
    assert rows_of(split.train, "user_id", "item_id") == [(1, 1), (1, 2), (2, 5), (2, 6), (3, 7)]
    assert rows_of(split.valid, "user_id", "item_id", "is_target") == [
        (1, 1, False),
        (1, 2, False),
        (1, 3, True),
        (3, 7, False),
        (3, 8, True),
    ]
    assert rows_of(split.test, "user_id", "item_id", "is_target") == [
        (1, 1, False),
        (1, 2, False),
        (1, 3, False),
        (1, 4, True),
        (3, 7, False),
        (3, 8, False),
        (3, 9, True),
    ]
    assert split.settings["train_only_users"] == 1


def test_split_with_no_evaluation_users_and_unknown_split():
    with pytest.raises(UserError, match="no evaluation users"):
        split_interactions(interactions([(1, 1, 0), (1, 2, 1)]), SplitConfig("loo"))
    with pytest.raises(UserError, match="unknown split"):
        SplitConfig("random")
