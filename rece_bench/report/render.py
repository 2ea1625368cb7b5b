"""Report sections and runs -> text: Markdown, LaTeX, Rich tables, CSV and JSON. Never trains anything."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd

from rece_bench.errors import UserError
from rece_bench.report.tables import (
    METRIC_COLUMNS,
    Cell,
    Section,
    fmt_memory,
    fmt_number,
    fmt_seconds,
    report_sections,
)
from rece_bench.training.metrics import metric_names

FORMATS = ("table", "markdown", "csv", "json", "latex")
TABLE_COLUMNS = ("dataset", "loss", "precision", *METRIC_COLUMNS, "peak", "train_time_s", "epochs", "status")
JSON_KEYS = (
    "run_id", "dataset", "loss", "status", *metric_names(), "peak_bytes", "start_bytes",
    "memory_method", "device_peak_bytes", "train_time_s", "threads", "epochs", "best_epoch", "budget_bytes", "seed",
    "device", "precision", "params", "message", "pid", "host",
)  # fmt: skip

# ---------------------------------------------------------------- renderers


MARKDOWN_STYLE = {"best": "**{}**", "second": "<u>{}</u>"}
LATEX_STYLE = {"best": r"\textbf{{{}}}", "second": r"\underline{{{}}}"}
RICH_STYLE = {"best": "[bold]{}[/]", "second": "[underline]{}[/]"}


def _styled(cell: Cell, style: dict[str, str], escape: Callable[[str], str] = str) -> str:
    text = escape(cell.text)
    text = style[cell.mark].format(text) if cell.mark else text
    return f"{text} ({cell.paper})" if cell.paper else text


def to_markdown_sections(sections: Sequence[Section]) -> str:
    parts = []
    for section in sections:
        lines = [f"### {section.title}", ""]
        lines.append("| " + " | ".join(section.columns) + " |")
        lines.append("|" + "|".join("---" for _ in section.columns) + "|")
        for row in section.rows:
            cells = [_styled(c, MARKDOWN_STYLE) for c in row]
            lines.append("| " + " | ".join(cells) + " |")
        lines += ["", *(f"_{note}_" for note in section.notes)]
        parts.append("\n".join(lines).rstrip() + "\n")
    return "\n".join(parts)


def _latex_escape(text: str) -> str:
    for raw, escaped in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("%", r"\%"), ("&", r"\&"), ("#", r"\#")):
        text = text.replace(raw, escaped)
    return text


def to_latex_sections(sections: Sequence[Section]) -> str:
    parts = []
    for section in sections:
        spec = "l" + "r" * (len(section.columns) - 1)
        lines = [f"% {section.title}", rf"\begin{{tabular}}{{{spec}}}", r"\hline"]
        lines.append(" & ".join(_latex_escape(c) for c in section.columns) + r" \\ \hline")
        for row in section.rows:
            cells = [_styled(c, LATEX_STYLE, _latex_escape) for c in row]
            lines.append(" & ".join(cells) + r" \\")
        lines += [r"\hline", r"\end{tabular}", *(f"% {note}" for note in section.notes)]
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)


def rich_sections(sections: Sequence[Section]) -> list:
    from rich.markup import escape
    from rich.table import Table

    tables = []
    for section in sections:
        table = Table(title=section.title, caption="; ".join(section.notes) or None)
        for i, column in enumerate(section.columns):
            justify = "left" if i == 0 or column == "configuration" else "right"
            table.add_column(column, justify=justify, overflow="fold")  # a narrow console folds, never cuts
        for row in section.rows:
            table.add_row(*[_styled(c, RICH_STYLE, escape) for c in row])
        tables.append(table)
    return tables


def to_json(frame: pd.DataFrame) -> str:
    records = []
    for row in frame.to_dict(orient="records"):
        records.append({key: _plain(row.get(key)) for key in JSON_KEYS if key in row})
    return json.dumps(records, indent=2) + "\n"


def _plain(value: Any) -> Any:
    if isinstance(value, float) and pd.isna(value):
        return None
    return value.item() if hasattr(value, "item") else value


def render_text(frame: pd.DataFrame, fmt: str, budget_bytes: int | None = None) -> str:
    """The report in a text format: markdown and latex show Table 2 and the fronts; csv and json the runs."""
    if fmt == "json":
        return to_json(frame)
    if fmt == "csv":
        buffer = io.StringIO()
        rows = frame.drop(columns=[c for c in ("history",) if c in frame])
        if "params" in rows:  # JSON, as in the result files, so that a reader can parse it back
            rows = rows.assign(params=rows["params"].map(lambda p: json.dumps(p, sort_keys=True, default=str)))
        rows.to_csv(buffer, index=False)
        return buffer.getvalue()
    if fmt == "markdown":
        return to_markdown_sections(report_sections(frame, budget_bytes))
    if fmt == "latex":
        return to_latex_sections(report_sections(frame, budget_bytes))
    raise UserError(f"unknown report format {fmt!r}: use one of {', '.join(FORMATS)}")


# ---------------------------------------------------------------- the runs, one row each (`run`, `demo`)


def summary_table(frame: pd.DataFrame) -> pd.DataFrame:
    """The displayed columns, formatted as text: metrics to 4 places, memory in binary units, time in seconds."""
    out = pd.DataFrame(index=frame.index)
    out["dataset"], out["loss"] = frame["dataset"], frame["loss"]
    out["precision"] = frame.get("precision", "fp32")
    for column in METRIC_COLUMNS:
        values = frame[column] if column in frame else pd.Series([None] * len(frame), index=frame.index)
        out[column] = values.map(fmt_number)
    out["peak"] = frame["peak_bytes"].map(fmt_memory)
    out["train_time_s"] = frame["train_time_s"].map(fmt_seconds)
    out["epochs"] = frame["epochs"].astype(int).astype(str)
    out["status"] = frame["status"]
    return out[list(TABLE_COLUMNS)]


def rich_table(frame: pd.DataFrame, title: str = "rece-bench results"):
    from rich.table import Table

    table = Table(title=title)
    for column in TABLE_COLUMNS:
        numeric = column not in ("dataset", "loss", "precision", "status")
        table.add_column(column, justify="right" if numeric else "left", overflow="fold")
    if not frame.empty:
        for row in summary_table(frame).itertuples(index=False):
            style = None if row.status == "ok" else "yellow"
            table.add_row(*[str(v) for v in row], style=style)
    return table
