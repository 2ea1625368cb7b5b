import numpy as np
import pandas as pd

from rece_bench.data.prepare import PrepareConfig, SyntheticSpec, prepare_dataset
from rece_bench.data.synthetic import generate_synthetic


def test_exact_sizes_and_determinism():
    a = generate_synthetic(users=2_000, items=5_000, interactions=40_000, seed=4)
    assert (a["user"].nunique(), a["item"].nunique(), len(a)) == (2_000, 5_000, 40_000)
    pd.testing.assert_frame_equal(a, generate_synthetic(2_000, 5_000, 40_000, seed=4))
    assert not a.equals(generate_synthetic(2_000, 5_000, 40_000, seed=5))


def test_times_increase_within_each_user_and_revisits_are_rare():
    frame = generate_synthetic(500, 2_000, 20_000, seed=0)
    assert frame.groupby("user")["timestamp"].apply(lambda t: t.is_monotonic_increasing).all()
    revisits = 1 - frame.groupby("user")["item"].nunique().sum() / len(frame)
    assert revisits < 0.1


def test_the_next_item_is_predictable_from_the_last():
    # The most frequent successor of an item should account for a large share of its transitions (the walk follows
    # its preferred successor with probability 0.85 x 0.5), far above a popularity guess.
    frame = generate_synthetic(1_000, 300, 60_000, seed=1)
    items = frame["item"].to_numpy()
    same_user = frame["user"].to_numpy()[1:] == frame["user"].to_numpy()[:-1]
    pairs = pd.DataFrame({"prev": items[:-1][same_user], "next": items[1:][same_user]})
    top_share = pairs.groupby("prev")["next"].agg(lambda s: s.value_counts().iloc[0] / len(s)).mean()
    popular_share = np.bincount(items).max() / len(items)
    assert top_share > 0.3 and top_share > 5 * popular_share


def test_like_keeps_the_exact_sizes_without_a_filter(tmp_path):
    spec = SyntheticSpec(users=400, items=3_000, interactions=12_000, seed=2, like="gowalla")
    report = prepare_dataset(PrepareConfig("synthetic", tmp_path, name="small-like", synthetic=spec))
    assert report.counts["filtered"] == {"users": 400, "items": 3_000, "interactions": 12_000}
    assert report.meta["filter"]["enabled"] is False and "gowalla" in report.meta["filter"]["policy"]
