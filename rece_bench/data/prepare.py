"""Orchestration: raw source -> parse -> filter -> contiguous ids -> split -> store, with the counts."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from rece_bench.data.download import DownloadConfig, ProgressCallback, cached_or_download, sha256_of
from rece_bench.data.filter import NO_FILTER, FilterConfig, apply_filter
from rece_bench.data.parse import TABLE_PARSERS, Columns, ParseResult, detect_format, get_parser, table_format
from rece_bench.data.registry import DatasetCard, PaperCounts, get_card
from rece_bench.data.split import Split, SplitConfig, index_interactions, split_interactions
from rece_bench.data.store import dataset_exists, dataset_path, ensure_writable_root, write_dataset
from rece_bench.errors import UserError

# The synthetic data keeps the paper's filter only when the filter leaves most of it in place.
SYNTHETIC_KEEP_INTERACTIONS = 0.9
SYNTHETIC_KEEP_USERS = 0.75


@dataclass(frozen=True)
class SyntheticSpec:
    users: int = 2_000
    items: int = 1_000
    interactions: int = 100_000
    seed: int = 0
    like: str | None = None  # the card whose paper counts set the sizes

    @classmethod
    def like_card(cls, name: str, seed: int = 0) -> SyntheticSpec:
        paper = get_card(name).paper
        if paper is None:
            raise UserError(f"dataset {name} has no paper statistics to copy: pass --like with a paper dataset")
        return cls(paper.users, paper.items, paper.interactions, seed, like=name)


@dataclass(frozen=True)
class CustomSpec:
    file: Path
    columns: Columns = field(default_factory=lambda: Columns("user_id", "item_id", "timestamp"))


@dataclass(frozen=True)
class PrepareConfig:
    dataset: str
    data_root: Path = Path("datasets")
    name: str | None = None  # where to store it; default: the dataset's name
    raw_path: Path | None = None  # a raw file the user already has (the offline path)
    raw_format: str | None = None  # force one of the card's raw formats instead of sniffing
    split: str | None = None  # override the card's split
    filter: FilterConfig | None = None  # None: the card's default
    strict: bool = False
    force: bool = False
    custom: CustomSpec | None = None
    synthetic: SyntheticSpec | None = None
    download: DownloadConfig = field(default_factory=DownloadConfig)

    def __post_init__(self) -> None:
        card = get_card(self.dataset)
        if self.dataset == "custom" and self.custom is None:
            raise UserError("prepare custom needs a file: pass --file PATH (csv, tsv, parquet or jsonl)")
        if self.dataset != "custom" and self.custom is not None:
            raise UserError(f"--file is only for the custom dataset: use --raw PATH with {self.dataset}")
        if self.raw_path is not None and not card.downloadable:
            hint = "--file PATH" if self.dataset == "custom" else "no --raw"
            raise UserError(f"--raw is for the paper datasets; {self.dataset} takes {hint}")
        if self.raw_format is not None and self.raw_format not in card.raw_formats:
            known = ", ".join(card.raw_formats) or "none"
            raise UserError(f"{self.dataset} has no raw format {self.raw_format!r}: choose one of {known}")
        SplitConfig(self.split or card.split)  # validates the name
        dataset_path(self.data_root, self.output_name, option="--name")  # validates the name

    @property
    def output_name(self) -> str:
        """--name, else ``synth-<card>`` for a synthetic set made --like a paper dataset (so it never replaces the
        default-sized ``synthetic`` that `run` trains on by default), else the dataset's name."""
        if self.name:
            return self.name
        like = self.synthetic.like if self.synthetic is not None and self.dataset == "synthetic" else None
        return synthetic_like_name(like) if like else self.dataset

    def command(self) -> str:
        """The command line that prepares this again, less --data-dir (meta.json keeps it for the hint when the
        data is damaged; the hint adds the data root the dataset is found under, wherever it was moved)."""
        args = ["rece-bench", "prepare", self.dataset]
        options = {
            "--name": self.name, "--raw": self.raw_path, "--format": self.raw_format, "--split": self.split,
            "--file": self.custom and self.custom.file,
        }  # fmt: skip
        if self.custom is not None:
            columns = self.custom.columns
            options |= {"--user-col": columns.user, "--item-col": columns.item, "--time-col": columns.time}
        if self.synthetic is not None:
            spec = self.synthetic
            options |= {"--users": spec.users, "--items": spec.items, "--interactions": spec.interactions}
            options |= {"--seed": spec.seed, "--like": spec.like}
        for flag, value in options.items():
            if value is not None:
                args += [flag, str(value)]
        return shlex.join([*args, *_filter_flags(self.filter), *(["--strict"] if self.strict else [])])


SYNTHETIC_LIKE_PREFIX = "synth-"


def synthetic_like_name(card: str) -> str:
    """Where `prepare synthetic --like CARD` stores its set by default: synth-gowalla."""
    return f"{SYNTHETIC_LIKE_PREFIX}{card}"


def _filter_flags(chosen: FilterConfig | None) -> list[str]:
    if chosen is None:
        return []
    if not chosen.enabled:
        return ["--no-filter"]
    flags = ["--min-item-users", str(chosen.min_item_users), "--min-user-items", str(chosen.min_user_items)]
    return flags + (["--k-core"] if chosen.iterative else [])


@dataclass(frozen=True)
class PrepareReport:
    name: str
    path: Path
    meta: dict[str, Any]
    paper: PaperCounts | None
    first_malformed: str | None = None

    @property
    def counts(self) -> dict[str, dict[str, int]]:
        return self.meta["counts"]


@dataclass(frozen=True)
class _Source:
    parsed: ParseResult
    description: str
    raw_sha256: str | None


def _counts(frame: pd.DataFrame, user: str = "user", item: str = "item") -> dict[str, int]:
    return {
        "users": int(frame[user].nunique()),
        "items": int(frame[item].nunique()),
        "interactions": len(frame),
    }


def _split_counts(frame: pd.DataFrame) -> dict[str, int]:
    return {"users": int(frame["user_id"].nunique()), "interactions": len(frame)}


def _raw_file(config: PrepareConfig, card: DatasetCard, progress: ProgressCallback | None) -> tuple[Path, str]:
    if config.raw_path is not None:
        return Path(config.raw_path), str(config.raw_path)
    if not card.downloadable:
        raise UserError(f"{card.name} has no download: pass --raw PATH")
    dest = Path(config.data_root) / "raw" / str(card.filename)
    path = cached_or_download(
        str(card.url),
        dest,
        sha256=card.sha256,
        size_bytes=card.size_bytes,
        progress=progress,
        config=config.download,
    )
    return path, str(card.url)


def _load_file(config: PrepareConfig, card: DatasetCard, progress: ProgressCallback | None) -> _Source:
    path, description = _raw_file(config, card, progress)
    fmt = config.raw_format or detect_format(path, card.raw_formats)
    parsed = get_parser(fmt)(path, strict=config.strict)
    return _Source(parsed, description, sha256_of(path))


def _load_custom(config: PrepareConfig) -> _Source:
    spec = config.custom
    assert spec is not None  # checked in PrepareConfig
    fmt = config.raw_format or table_format(spec.file)
    parsed = TABLE_PARSERS[fmt](spec.file, spec.columns, strict=config.strict)
    return _Source(parsed, str(spec.file), sha256_of(spec.file))


def _load_synthetic(config: PrepareConfig) -> _Source:
    from rece_bench.data.synthetic import generate_synthetic

    spec = config.synthetic or SyntheticSpec()
    frame = generate_synthetic(spec.users, spec.items, spec.interactions, spec.seed)
    users = [str(u) for u in range(int(frame["user"].max()) + 1)]
    items = [str(i) for i in range(int(frame["item"].max()) + 1)]
    parsed = ParseResult(frame[["user", "item", "timestamp"]], users, items, "synthetic", 0, 0, None)
    description = (
        f"synthetic: users={spec.users} items={spec.items} interactions={spec.interactions} seed={spec.seed}"
        + (f" like={spec.like}" if spec.like else "")
    )
    return _Source(parsed, description, None)


def _load(config: PrepareConfig, card: DatasetCard, progress: ProgressCallback | None) -> _Source:
    if card.name == "synthetic":
        return _load_synthetic(config)
    if card.name == "custom":
        return _load_custom(config)
    return _load_file(config, card, progress)


def _synthetic_filter(frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The paper's filter when it leaves most of the generated data, else none; the choice goes to meta."""
    paper = FilterConfig()
    filtered = apply_filter(frame, paper)
    kept_interactions = len(filtered) / max(len(frame), 1)
    kept_users = filtered["user"].nunique() / max(frame["user"].nunique(), 1)
    use = kept_interactions >= SYNTHETIC_KEEP_INTERACTIONS and kept_users >= SYNTHETIC_KEEP_USERS
    settings = {
        **(paper.settings() if use else NO_FILTER.settings()),
        "policy": "auto: the paper's filter if it keeps >= "
        f"{SYNTHETIC_KEEP_INTERACTIONS:.0%} of interactions and {SYNTHETIC_KEEP_USERS:.0%} of users",
        "paper_filter_kept": {"interactions": round(kept_interactions, 4), "users": round(kept_users, 4)},
    }
    return (filtered if use else frame), settings


def _filtered(config: PrepareConfig, card: DatasetCard, frame: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    if config.filter is None and card.name == "synthetic":
        if config.synthetic is not None and config.synthetic.like:
            # --like asks for a paper dataset's exact sizes (for memory benchmarks): no filter may change them.
            return frame, {**NO_FILTER.settings(), "policy": f"none: sizes copied from {config.synthetic.like}"}
        return _synthetic_filter(frame)
    chosen = config.filter or (FilterConfig() if card.filtered else NO_FILTER)
    return apply_filter(frame, chosen), chosen.settings()


def _meta(
    config: PrepareConfig,
    card: DatasetCard,
    source: _Source,
    counts: dict,
    filter_settings: dict,
    split: Split,
) -> dict[str, Any]:
    from rece_bench import __version__

    return {
        "dataset": card.name,
        "command": config.command(),
        "source": source.description,
        "like": config.synthetic.like if config.synthetic is not None else None,  # synthetic: whose sizes
        "raw_format": source.parsed.format,
        "raw_sha256": source.raw_sha256,
        "filter": filter_settings,
        "split": split.settings,
        "num_users": counts["filtered"]["users"],
        "num_items": counts["filtered"]["items"],
        "counts": counts,
        "malformed_lines": source.parsed.malformed_lines,
        "skipped_rows": source.parsed.skipped_rows,
        "paper": None if card.paper is None else vars(card.paper).copy(),
        "package_version": __version__,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def prepare_dataset(config: PrepareConfig, progress: ProgressCallback | None = None) -> PrepareReport:
    """Prepare ``config.dataset`` under ``config.data_root``; ``progress`` gets download (done, total)."""
    card = get_card(config.dataset)
    name = config.output_name
    if dataset_exists(config.data_root, name) and not config.force:
        raise UserError(f"dataset {name} is already prepared under {config.data_root}: pass --force to redo it")
    ensure_writable_root(config.data_root)
    source = _load(config, card, progress)
    frame, filter_settings = _filtered(config, card, source.parsed.frame)
    if frame.empty:
        raise UserError(f"the filter removed every interaction of {name}: loosen it (--min-user-items, --no-filter)")
    indexed = index_interactions(frame, source.parsed.users, source.parsed.items)
    split = split_interactions(indexed.frame, SplitConfig(config.split or card.split))
    counts = {
        "raw": _counts(source.parsed.frame),
        "filtered": _counts(frame),
        **{key: _split_counts(getattr(split, key)) for key in ("train", "valid", "test")},
    }
    meta = _meta(config, card, source, counts, filter_settings, split)
    splits = {"train": split.train, "valid": split.valid, "test": split.test}
    path = write_dataset(config.data_root, name, splits, indexed.raw_users, indexed.raw_items, meta, config.force)
    return PrepareReport(name, path, meta, card.paper, source.parsed.first_malformed)
