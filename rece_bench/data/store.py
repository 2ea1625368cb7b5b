"""Prepared datasets on disk: ``<data root>/<name>/``: train/valid/test Parquet, the id maps, meta.json.

A dataset is written into a temporary directory beside its target and renamed into place, so a reader sees the
old dataset or the new one, never half of one, whatever happens during the write. Reading goes through
``rece_bench.io``'s readers: a damaged or missing file is a one-line error naming it and the ``prepare`` command
that makes the dataset again (``meta.json`` keeps the command that made it).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from rece_bench.errors import UserError
from rece_bench.io import read_json, read_parquet
from rece_bench.processes import process_exists

FORMAT_VERSION = 1
SPLIT_FILES = ("train", "valid", "test")
META_FILE = "meta.json"
SPLIT_COLUMNS = {
    "train": ("user_id", "item_id", "timestamp"),
    "valid": ("user_id", "item_id", "timestamp", "is_target"),
    "test": ("user_id", "item_id", "timestamp", "is_target"),
}
META_KEYS = ("num_items",)  # what training reads; the rest is description


@dataclass(frozen=True)
class PreparedDataset:
    name: str
    path: Path
    meta: dict[str, Any]
    train: pd.DataFrame  # user_id, item_id, timestamp
    valid: pd.DataFrame  # user_id, item_id, timestamp, is_target
    test: pd.DataFrame


def dataset_path(root: Path, name: str, option: str = "--dataset") -> Path:
    """``<root>/<name>``; ``option`` is the flag that gave the name, for the message when it is no folder name."""
    plain = name and not name.startswith(".") and "/" not in name and "\\" not in name and name.isprintable()
    if not plain:
        raise UserError(f"dataset name {name!r} is not a plain folder name: pass {option} with letters and digits")
    return Path(root) / name


def dataset_exists(root: Path, name: str) -> bool:
    return (dataset_path(root, name) / META_FILE).is_file()


def _id_map(column: str, raw_column: str, raw_ids: list[str]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            column: pd.Series(range(1, len(raw_ids) + 1), dtype="int64"),
            raw_column: pd.Series(raw_ids, dtype="string"),
        }
    )


def _write_files(folder: Path, frames: dict[str, pd.DataFrame], meta: dict[str, Any]) -> None:
    for name, frame in frames.items():
        frame.to_parquet(folder / f"{name}.parquet", index=False)
    text = json.dumps(meta, indent=2, sort_keys=True, default=str) + "\n"
    (folder / META_FILE).write_text(text, encoding="utf-8")


def ensure_writable_root(root: Path) -> None:
    """Fail early, before any parsing, when the data root cannot hold a new dataset."""
    root = Path(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=root):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise UserError(f"cannot write under data dir {root}: {reason}: pass a writable --data-dir") from None


def write_dataset(
    root: Path,
    name: str,
    splits: dict[str, pd.DataFrame],
    raw_users: list[str],
    raw_items: list[str],
    meta: dict[str, Any],
    force: bool = False,
) -> Path:
    """Write ``splits`` (train, valid, test), the id maps and ``meta`` as ``<root>/<name>``, atomically."""
    target = dataset_path(root, name, option="--name")
    if target.exists() and not force:
        raise UserError(f"dataset {name} already exists at {target}: pass --force to prepare it again")
    ensure_writable_root(target.parent)
    remove_abandoned_staging(target.parent, name)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.{os.getpid()}.", suffix=".tmp", dir=target.parent))
    try:
        staging.chmod(0o755)  # mkdtemp makes it private; a dataset is as readable as any folder
        frames = {key: splits[key] for key in SPLIT_FILES}
        frames["user_map"] = _id_map("user_id", "raw_user", raw_users)
        frames["item_map"] = _id_map("item_id", "raw_item", raw_items)
        _write_files(staging, frames, {**meta, "format_version": FORMAT_VERSION, "name": name})
        _swap_into_place(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def remove_abandoned_staging(parent: Path, name: str) -> None:
    """Staging folders of ``name`` (``.<name>.<pid>.<random>.tmp``) whose process is gone: a prepare killed mid-write
    (``kill -9``) leaves one behind, and the next prepare of that name removes it. A live process's is kept."""
    for stale in Path(parent).glob(f".{name}.*.tmp"):
        pid = stale.name[len(name) + 2 :].split(".")[0]
        if stale.is_dir() and pid.isdigit() and not process_exists(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)


def _swap_into_place(staging: Path, target: Path) -> None:
    """Rename ``staging`` to ``target``; an old ``target`` is moved aside first and removed after."""
    if not target.exists():
        staging.rename(target)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
    old.rmdir()
    target.rename(old)
    try:
        staging.rename(target)
    except BaseException:
        old.rename(target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def read_meta(root: Path, name: str) -> dict[str, Any]:
    path = dataset_path(root, name)
    if not (path / META_FILE).is_file():
        raise UserError(f"dataset {name} is not prepared under {Path(root)}: {_prepare_first(root, name)}")
    meta = read_json(path / META_FILE, prepare_again(root, name))
    if meta.get("format_version") != FORMAT_VERSION:
        raise UserError(
            f"dataset {name} at {path} has format version {meta.get('format_version')}, this version reads "
            f"{FORMAT_VERSION}: {prepare_again(root, name, meta)}"
        )
    missing = [key for key in META_KEYS if key not in meta]
    if missing:
        fix = prepare_again(root, name, meta)
        raise UserError(f"cannot read {path / META_FILE} (no {', '.join(missing)} in it): {fix}")
    return meta


def read_dataset(root: Path, name: str) -> PreparedDataset:
    """The prepared dataset ``name`` under ``root``."""
    meta = read_meta(root, name)
    path = dataset_path(root, name)
    fix = prepare_again(root, name, meta)
    frames = {key: read_parquet(path / f"{key}.parquet", fix, SPLIT_COLUMNS[key]) for key in SPLIT_FILES}
    return PreparedDataset(name, path, meta, frames["train"], frames["valid"], frames["test"])


def read_id_maps(root: Path, name: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(user_map, item_map) of a prepared dataset."""
    meta = read_meta(root, name)
    path = dataset_path(root, name)
    fix = prepare_again(root, name, meta)
    return (
        read_parquet(path / "user_map.parquet", fix, ("user_id", "raw_user")),
        read_parquet(path / "item_map.parquet", fix, ("item_id", "raw_item")),
    )


# ---------------------------------------------------------------- what to run to (re)make a dataset


def data_dir_args(root: Path) -> list[str]:
    """``--data-dir ROOT`` unless ``root`` is where the commands look anyway."""
    from rece_bench.paths import data_root

    return [] if Path(root) == data_root(None) else ["--data-dir", str(root)]


def prepare_again(root: Path, name: str, meta: dict[str, Any] | None = None) -> str:
    """The fix for a damaged or outdated dataset: the command that prepares it again over what is there (the one
    recorded in its meta.json, else the best guess from its card)."""
    if meta and isinstance(meta.get("command"), str):
        args = [arg for arg in shlex.split(meta["command"]) if arg != "--force"]
        return f"prepare it again: `{shlex.join([*args, *data_dir_args(root), '--force'])}`"
    card = (meta or {}).get("dataset") or (name if _is_card(name) else "DATASET")
    args = ["rece-bench", "prepare", str(card), *(["--name", name] if card != name else []), *data_dir_args(root)]
    command = shlex.join([*args, "--force"])
    if card in ("synthetic", "custom", "DATASET"):
        return f"prepare it again: `{command}` with the options you first gave it"
    return f"prepare it again: `{command}`"


def _prepare_first(root: Path, name: str) -> str:
    where = data_dir_args(root)
    if _is_card(name) and name != "custom":
        return f"run `{shlex.join(['rece-bench', 'prepare', name, *where])}`"
    like = name.removeprefix("synth-")
    if name.startswith("synth-") and _is_card(like):  # prepare synthetic --like CARD stores it under this name
        return f"run `{shlex.join(['rece-bench', 'prepare', 'synthetic', '--like', like, *where])}`"
    prepared = sorted(p.parent.name for p in Path(root).glob(f"*/{META_FILE}"))
    there = f" (prepared there: {', '.join(prepared)})" if prepared else ""
    synthetic = shlex.join(["rece-bench", "prepare", "synthetic", "--name", name, *where])
    custom = shlex.join(["rece-bench", "prepare", "custom", "--file", "FILE", "--name", name, *where])
    return f"pick a prepared one{there} or make it: `{synthetic}` or `{custom}`"


def _is_card(name: str) -> bool:
    from rece_bench.data.registry import DATASETS

    return name in DATASETS
