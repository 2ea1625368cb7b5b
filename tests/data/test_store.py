import json

import pandas as pd
import pytest

from rece_bench.data import store
from rece_bench.errors import UserError


def splits():
    train = pd.DataFrame({"user_id": [1, 1], "item_id": [1, 2], "timestamp": [0, 1]}, dtype="int64")
    test = train.assign(is_target=[False, True])
    return {"train": train, "valid": test.iloc[:1].assign(is_target=[True]), "test": test}


def write(root, name="toy", force=False):
    return store.write_dataset(root, name, splits(), ["u"], ["a", "b"], {"num_items": 2}, force=force)


def test_round_trip_and_maps(tmp_path):
    path = write(tmp_path)
    assert store.dataset_exists(tmp_path, "toy")
    prepared = store.read_dataset(tmp_path, "toy")
    assert prepared.meta["format_version"] == store.FORMAT_VERSION and prepared.meta["name"] == "toy"
    pd.testing.assert_frame_equal(prepared.test, splits()["test"])
    users, items = store.read_id_maps(tmp_path, "toy")
    assert items.to_dict("list") == {"item_id": [1, 2], "raw_item": ["a", "b"]}
    assert sorted(p.name for p in path.iterdir()) == sorted(
        [
            "train.parquet",
            "valid.parquet",
            "test.parquet",
            "user_map.parquet",
            "item_map.parquet",
            "meta.json",
        ]
    )
    assert [p.name for p in tmp_path.iterdir()] == ["toy"]  # no staging folder left behind


def test_existing_dataset_needs_force(tmp_path):
    write(tmp_path)
    with pytest.raises(UserError, match="--force"):
        write(tmp_path)
    write(tmp_path, force=True)
    assert [p.name for p in tmp_path.iterdir()] == ["toy"]


def test_a_failed_write_leaves_nothing_and_keeps_the_old_dataset(tmp_path, monkeypatch):
    write(tmp_path)

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(store, "_swap_into_place", boom)
    with pytest.raises(KeyboardInterrupt):
        write(tmp_path, force=True)
    assert [p.name for p in tmp_path.iterdir()] == ["toy"]
    assert store.read_dataset(tmp_path, "toy").train.shape == (2, 3)


def test_missing_and_old_datasets_say_what_to_run(tmp_path):
    with pytest.raises(UserError, match=r"dataset toy is not prepared under .*: run `rece-bench prepare toy`"):
        store.read_dataset(tmp_path, "toy")
    path = write(tmp_path)
    meta = json.loads((path / "meta.json").read_text())
    (path / "meta.json").write_text(json.dumps({**meta, "format_version": 0}))
    with pytest.raises(UserError, match="--force"):
        store.read_dataset(tmp_path, "toy")
    with pytest.raises(UserError, match="plain folder name"):
        store.read_dataset(tmp_path, "../x")
