"""Result rows -> tables (Rich, Markdown, CSV, JSON). Reads results; never trains anything."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from typing import Any

import pandas as pd

from rece_bench.errors import UserError
from rece_bench.memory import format_bytes
from rece_bench.metrics import metric_names

FORMATS = ("table", "json", "csv", "markdown")
METRIC_COLUMNS = ("ndcg@1", "ndcg@5", "ndcg@10", "hr@5", "hr@10")
TABLE_COLUMNS = ("dataset", "loss", *METRIC_COLUMNS, "peak", "train_time_s", "epochs", "status")
JSON_KEYS = (
    "run_id", "dataset", "loss", "status", *metric_names(), "peak_bytes", "start_bytes",
    "memory_method", "device_peak_bytes", "train_time_s", "epochs", "best_epoch", "budget_bytes", "seed",
    "device", "params", "message",
)  # fmt: skip


def results_frame(rows: Sequence[dict[str, Any]], dataset: str | None = None) -> pd.DataFrame:
    frame = pd.DataFrame(list(rows))
    if frame.empty:
        return frame
    if dataset is not None:
        frame = frame[frame["dataset"] == dataset]
    return frame.reset_index(drop=True)


def summary_table(frame: pd.DataFrame) -> pd.DataFrame:
    """The displayed columns, formatted as text: metrics to 4 places, memory in binary units, time in seconds."""
    out = pd.DataFrame(index=frame.index)
    out["dataset"], out["loss"] = frame["dataset"], frame["loss"]
    for column in METRIC_COLUMNS:
        values = frame[column] if column in frame else pd.Series([None] * len(frame), index=frame.index)
        out[column] = values.map(lambda v: "-" if v is None or pd.isna(v) else f"{v:.4f}")
    out["peak"] = frame["peak_bytes"].map(lambda v: "-" if v is None or pd.isna(v) else format_bytes(v))
    out["train_time_s"] = frame["train_time_s"].map(lambda v: f"{v:.1f}")
    out["epochs"] = frame["epochs"].astype(int).astype(str)
    out["status"] = frame["status"]
    return out[list(TABLE_COLUMNS)]


def to_markdown(table: pd.DataFrame) -> str:
    header = "| " + " | ".join(table.columns) + " |"
    rule = "|" + "|".join("---" for _ in table.columns) + "|"
    body = ["| " + " | ".join(str(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *body]) + "\n"


def to_json(frame: pd.DataFrame) -> str:
    records = []
    for row in frame.to_dict(orient="records"):
        records.append({key: _plain(row.get(key)) for key in JSON_KEYS if key in row})
    return json.dumps(records, indent=2) + "\n"


def _plain(value: Any) -> Any:
    if isinstance(value, float) and pd.isna(value):
        return None
    return value.item() if hasattr(value, "item") else value


def render_text(frame: pd.DataFrame, fmt: str) -> str:
    """The report as text in one of the non-Rich formats."""
    if fmt == "json":
        return to_json(frame)
    table = summary_table(frame) if not frame.empty else pd.DataFrame(columns=list(TABLE_COLUMNS))
    if fmt == "markdown":
        return to_markdown(table)
    if fmt == "csv":
        buffer = io.StringIO()
        frame.drop(columns=[c for c in ("history",) if c in frame]).to_csv(buffer, index=False)
        return buffer.getvalue()
    raise UserError(f"unknown report format {fmt!r}: use one of {', '.join(FORMATS)}")


def rich_table(frame: pd.DataFrame, title: str = "rece-bench results"):
    from rich.table import Table

    table = Table(title=title)
    for column in TABLE_COLUMNS:
        numeric = column not in ("dataset", "loss", "status")
        table.add_column(column, justify="right" if numeric else "left")
    if not frame.empty:
        for row in summary_table(frame).itertuples(index=False):
            style = None if row.status == "ok" else "yellow"
            table.add_row(*[str(v) for v in row], style=style)
    return table
