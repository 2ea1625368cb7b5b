from pathlib import Path

import pandas as pd
import pytest

from rece_bench.data.filter import FilterConfig
from rece_bench.data.parse import Columns
from rece_bench.data.prepare import CustomSpec, PrepareConfig, SyntheticSpec, prepare_dataset
from rece_bench.data.store import read_dataset, read_id_maps
from rece_bench.errors import UserError
from tests.data import BEAUTY_SAMPLE, GOWALLA_SAMPLE, shared_file


def check_layout(prepared):
    for frame in (prepared.train, prepared.valid, prepared.test):
        assert frame.equals(frame.sort_values(["user_id", "timestamp"], kind="stable"))
        assert frame["user_id"].min() >= 1 and frame["item_id"].min() >= 1
    for frame in (prepared.valid, prepared.test):
        assert (frame.groupby("user_id")["is_target"].sum() == 1).all()
        assert frame.groupby("user_id")["is_target"].last().all()


def test_gowalla_sample_matches_the_paper_filter(tmp_path):
    report = prepare_dataset(PrepareConfig("gowalla", tmp_path, raw_path=shared_file(GOWALLA_SAMPLE)))
    assert report.counts["raw"] == {"users": 7_115, "items": 21_509, "interactions": 138_957}
    assert report.counts["filtered"] == {"users": 819, "items": 5_252, "interactions": 59_127}
    prepared = read_dataset(tmp_path, "gowalla")
    check_layout(prepared)
    assert not set(prepared.test["user_id"]) & set(prepared.train["user_id"])
    assert set(prepared.valid["user_id"]) == set(prepared.test["user_id"])
    assert prepared.meta["num_items"] == 5_252 and prepared.meta["split"]["method"] == "temporal"
    assert prepared.meta["raw_sha256"].startswith("82bde513")
    test_targets = prepared.test[prepared.test["is_target"]]
    assert (test_targets["timestamp"] >= prepared.meta["split"]["threshold"]).all()


def test_beauty_sample_is_leave_one_out_with_the_standard_ids(tmp_path):
    report = prepare_dataset(PrepareConfig("beauty", tmp_path, raw_path=shared_file(BEAUTY_SAMPLE)))
    assert report.counts["filtered"] == {"users": 22_363, "items": 12_101, "interactions": 198_502}
    assert report.counts["test"]["users"] == report.counts["valid"]["users"] == 22_363
    prepared = read_dataset(tmp_path, "beauty")
    check_layout(prepared)
    assert report.meta["filter"] == {"enabled": False}
    assert len(prepared.train) == 198_502 - 2 * 22_363
    users, items = read_id_maps(tmp_path, "beauty")
    assert (items["raw_item"].astype(int) == items["item_id"]).all()


def test_synthetic_and_like(tmp_path):
    report = prepare_dataset(PrepareConfig("synthetic", tmp_path, synthetic=SyntheticSpec(300, 200, 15_000, seed=1)))
    assert report.counts["raw"]["interactions"] == 15_000
    assert "policy" in report.meta["filter"]
    check_layout(read_dataset(tmp_path, "synthetic"))
    assert SyntheticSpec.like_card("gowalla").interactions == 2_627_663
    with pytest.raises(UserError, match="no paper statistics"):
        SyntheticSpec.like_card("custom")


def test_custom_file_through_filter_split_and_store(tmp_path):
    rows = [(f"u{u}", f"i{(u + k) % 9}", 1000 * u + k) for u in range(12) for k in range(8)]
    path = tmp_path / "mine.csv"
    pd.DataFrame(rows, columns=["who", "what", "when"]).to_csv(path, index=False)
    config = PrepareConfig(
        "custom",
        tmp_path / "data",
        name="mine",
        split="loo",
        custom=CustomSpec(path, Columns("who", "what", "when")),
        filter=FilterConfig(min_item_users=2, min_user_items=3),
    )
    report = prepare_dataset(config)
    assert report.counts["filtered"] == {"users": 12, "items": 9, "interactions": 96}
    assert report.counts["test"]["users"] == 12
    check_layout(read_dataset(tmp_path / "data", "mine"))


def test_bad_input_leaves_no_dataset(tmp_path):
    raw = tmp_path / "bad.txt.gz"
    raw.write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(UserError, match="gzip"):
        prepare_dataset(PrepareConfig("gowalla", tmp_path / "data", raw_path=raw))
    assert not (tmp_path / "data").exists() or list((tmp_path / "data").iterdir()) == []


def test_config_checks():
    with pytest.raises(UserError, match="unknown dataset 'nope'"):
        PrepareConfig("nope")
    with pytest.raises(UserError, match="--file"):
        PrepareConfig("custom")
    with pytest.raises(UserError, match="no raw format 'csv'"):
        PrepareConfig("gowalla", raw_format="csv")
    with pytest.raises(UserError, match="unknown split"):
        PrepareConfig("gowalla", split="random")
    with pytest.raises(UserError, match="--raw is for the paper datasets"):
        PrepareConfig("synthetic", raw_path=Path("x.txt"))
