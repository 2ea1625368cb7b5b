"""Prepared datasets on disk: ``<data root>/<name>/``: train/valid/test Parquet, the id maps, meta.json.

A dataset is written into a temporary directory beside its target and renamed into place, so a reader sees the
old dataset or the new one, never half of one, whatever happens during the write.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from rece_bench.errors import UserError

FORMAT_VERSION = 1
SPLIT_FILES = ("train", "valid", "test")
META_FILE = "meta.json"


@dataclass(frozen=True)
class PreparedDataset:
    name: str
    path: Path
    meta: dict[str, Any]
    train: pd.DataFrame  # user_id, item_id, timestamp
    valid: pd.DataFrame  # user_id, item_id, timestamp, is_target
    test: pd.DataFrame


def dataset_path(root: Path, name: str) -> Path:
    if not name or name.startswith(".") or "/" in name or "\\" in name:
        raise UserError(f"dataset name {name!r} is not a plain folder name: pass --name with letters and digits")
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
    target = dataset_path(root, name)
    if target.exists() and not force:
        raise UserError(f"dataset {name} already exists at {target}: pass --force to prepare it again")
    ensure_writable_root(target.parent)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=target.parent))
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
        raise UserError(f"dataset {name} is not prepared under {Path(root)}: run `rece-bench prepare {name}`")
    try:
        meta = json.loads((path / META_FILE).read_text(encoding="utf-8"))
    except ValueError:
        raise UserError(f"{path / META_FILE} is damaged: run `rece-bench prepare {name} --force`") from None
    if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
        found = meta.get("format_version") if isinstance(meta, dict) else None
        raise UserError(
            f"dataset {name} at {path} has format version {found}, this version reads {FORMAT_VERSION}: "
            f"run `rece-bench prepare {name} --force`"
        )
    return meta


def read_dataset(root: Path, name: str) -> PreparedDataset:
    """The prepared dataset ``name`` under ``root``."""
    meta = read_meta(root, name)
    path = dataset_path(root, name)
    frames = {key: pd.read_parquet(path / f"{key}.parquet") for key in SPLIT_FILES}
    return PreparedDataset(name, path, meta, frames["train"], frames["valid"], frames["test"])


def read_id_maps(root: Path, name: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(user_map, item_map) of a prepared dataset."""
    read_meta(root, name)
    path = dataset_path(root, name)
    return pd.read_parquet(path / "user_map.parquet"), pd.read_parquet(path / "item_map.parquet")
