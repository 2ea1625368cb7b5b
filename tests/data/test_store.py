import json
import os
import re

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


def test_a_staging_folder_of_a_killed_prepare_goes_with_the_next_prepare(tmp_path):
    import subprocess
    import sys

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(gone.stdout)  # a process that has ended: its pid is free (reuse within the test is unlikely)
    abandoned = tmp_path / f".toy.{dead_pid}.x1.tmp"
    live = tmp_path / f".toy.{os.getpid()}.x2.tmp"  # as if another prepare of this process were writing it
    other = tmp_path / f".other.{dead_pid}.x3.tmp"
    for folder in (abandoned, live, other):
        folder.mkdir()
        (folder / "train.parquet").write_bytes(b"half")
    write(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["toy", live.name, other.name])


def test_missing_and_old_datasets_say_what_to_run(tmp_path):
    with pytest.raises(UserError, match=r"dataset gowalla is not prepared under .*: run `rece-bench prepare gowalla "):
        store.read_dataset(tmp_path, "gowalla")
    # a name that is no dataset card: `prepare toy` would fail, so the hint says how to make one of that name
    with pytest.raises(UserError, match=r"`rece-bench prepare synthetic --name toy .*` or `rece-bench prepare custom"):
        store.read_dataset(tmp_path, "toy")
    path = write(tmp_path)
    meta = json.loads((path / "meta.json").read_text())
    (path / "meta.json").write_text(json.dumps({**meta, "format_version": 0}))
    with pytest.raises(UserError, match="--force"):
        store.read_dataset(tmp_path, "toy")
    with pytest.raises(UserError, match="plain folder name"):
        store.read_dataset(tmp_path, "../x")


@pytest.mark.parametrize(
    ("damage", "why"),
    [
        (lambda path: path.write_bytes(path.read_bytes()[:100]), "train.parquet"),
        (lambda path: path.write_bytes(b""), "train.parquet"),
        (lambda path: path.unlink(), "it is missing"),
        (lambda path: pd.DataFrame({"x": [1]}).to_parquet(path), "no column user_id, item_id, timestamp"),
    ],
    ids=["truncated", "empty", "missing", "other-columns"],
)
def test_a_damaged_split_is_a_one_line_error_naming_the_file_and_the_fix(tmp_path, damage, why):
    path = write(tmp_path)
    damage(path / "train.parquet")
    with pytest.raises(UserError) as caught:
        store.read_dataset(tmp_path, "toy")
    message = str(caught.value)
    assert "\n" not in message and str(path / "train.parquet") in message and why in message
    assert "prepare it again: `rece-bench prepare DATASET --name toy" in message  # no command recorded here


@pytest.mark.parametrize("text", ["", "{", "[1, 2]", '"meta"', '{"format_version": 1}'], ids=repr)
def test_a_damaged_meta_json_is_a_one_line_error(tmp_path, text):
    path = write(tmp_path)
    (path / "meta.json").write_text(text)
    with pytest.raises(UserError, match=r"cannot read .*meta\.json \(.*\): prepare it again"):
        store.read_meta(tmp_path, "toy")


def test_the_hint_repeats_the_recorded_prepare_command(tmp_path):
    meta = {"num_items": 2, "command": "rece-bench prepare synthetic --users 9 --name toy"}
    path = store.write_dataset(tmp_path, "toy", splits(), ["u"], ["a", "b"], meta)
    (path / "valid.parquet").write_bytes(b"PAR1")
    expected = f"prepare it again: `rece-bench prepare synthetic --users 9 --name toy --data-dir {tmp_path} --force`"
    with pytest.raises(UserError, match=re.escape(expected)):
        store.read_dataset(tmp_path, "toy")


def test_a_name_that_is_no_folder_names_the_option_that_gave_it(tmp_path):
    with pytest.raises(UserError, match="pass --dataset with"):
        store.read_meta(tmp_path, "../evil")
    with pytest.raises(UserError, match="pass --name with"):
        store.write_dataset(tmp_path, "../evil", splits(), ["u"], ["a", "b"], {"num_items": 2})
