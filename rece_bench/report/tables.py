"""Result rows -> the paper's tables: Table 2 per budget, Pareto fronts, and the runs. Never trains anything.

Runs of one configuration (every hyperparameter but the seed) are averaged over seeds. A configuration is picked
by its *validation* NDCG@10 (test NDCG@10 where a run has none), the way a budget-bound user would pick it; the
table shows its test metrics. The Pareto front of a loss keeps the configurations whose validation NDCG@10 beats
every cheaper one's, so the Table 2 row of a loss within a budget is the last point of its front under that
budget; their test NDCG@10 need not rise along the front. Only runs with status ok enter the tables; a loss that
has runs but none that fits shows dashes, and when some run did not end ok, a last section lists every run of the
dataset with its status (running, killed, interrupted, diverged, oom, over_budget) and message.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from rece_bench.memory import format_bytes

METRIC_COLUMNS = ("ndcg@1", "ndcg@5", "ndcg@10", "hr@5", "hr@10")
METRIC_TITLES = ("NDCG@1", "NDCG@5", "NDCG@10", "HR@5", "HR@10")
REFERENCE_LOSSES = ("popularity",)  # shown for scale, never ranked
SELECTION = ("valid_ndcg@10", "ndcg@10")  # the first one present picks a configuration
DEFAULT_PRECISION = "fp32"


def _loss_cards() -> dict:
    """The loss cards, read when a report is made (they carry the losses' order, labels and the paper's numbers)."""
    from rece_bench.losses.cards import CARDS

    return CARDS


# ---------------------------------------------------------------- frames


def results_frame(rows: Sequence[dict[str, Any]], dataset: str | None = None) -> pd.DataFrame:
    """The rows as a frame (of ``dataset`` only, when given); a row without a precision was fp32 (written before
    precisions existed)."""
    frame = pd.DataFrame(list(rows))
    if frame.empty:
        return frame
    frame["precision"] = frame["precision"].fillna(DEFAULT_PRECISION) if "precision" in frame else DEFAULT_PRECISION
    if dataset is not None:
        frame = frame[frame["dataset"] == dataset]
    return frame.reset_index(drop=True)


def config_label(params: dict[str, Any]) -> str:
    """The knobs a budget or a sweep turns: 'batch 64, n_ec 3, r 8'."""
    shown = {"batch_size": params.get("batch_size")} if "batch_size" in params else {}
    shown |= {k.removeprefix("loss."): v for k, v in sorted(params.items()) if k.startswith("loss.")}
    from rece_bench.losses.cards import abbreviate

    return ", ".join(f"{abbreviate(k)} {v}" for k, v in shown.items()) or "-"


def _config_key(params: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in params.items() if k not in ("seed", "budget_bytes")}, sort_keys=True)


def configurations(frame: pd.DataFrame) -> pd.DataFrame:
    """Runs with status ok, one row per (dataset, loss, configuration), metrics averaged over seeds.

    Columns: dataset, loss, config, precision, seeds, the metrics, score (what picks a configuration), peak_bytes
    (the highest over seeds), train_time_s (the mean). The precision is part of a configuration (its params say
    so when it is not fp32), so fp32 and bf16 runs are never averaged together.
    """
    columns = ["dataset", "loss", "config", "precision", "seeds", *METRIC_COLUMNS, "score", "peak_bytes"]
    columns.append("train_time_s")
    if frame.empty:
        return pd.DataFrame(columns=columns)
    ok = frame[frame["status"] == "ok"].copy()
    if ok.empty:
        return pd.DataFrame(columns=columns)
    if "precision" not in ok:
        ok["precision"] = DEFAULT_PRECISION
    ok["key"] = ok["params"].map(_config_key)
    ok["config"] = ok["params"].map(config_label)
    ok["score"] = _selection_score(ok)
    for column in (*METRIC_COLUMNS, "peak_bytes"):
        ok[column] = pd.to_numeric(ok[column], errors="coerce") if column in ok else float("nan")
    grouped = ok.groupby(["dataset", "loss", "key"], sort=False, dropna=False)
    out = grouped.agg(
        config=("config", "first"), precision=("precision", "first"), seeds=("seed", "nunique"),
        **{m: (m, "mean") for m in METRIC_COLUMNS},
        score=("score", "mean"), peak_bytes=("peak_bytes", "max"), train_time_s=("train_time_s", "mean"),
    ).reset_index()  # fmt: skip
    return out[columns]


def _selection_score(frame: pd.DataFrame) -> pd.Series:
    score = pd.Series(float("nan"), index=frame.index)
    for column in reversed(SELECTION):  # the first present wins
        if column in frame:
            values = pd.to_numeric(frame[column], errors="coerce")
            score = values.where(values.notna(), score)
    return score


def pareto_fronts(configs: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, loss): the configurations better than every cheaper one, by peak memory."""
    measured = configs[configs["peak_bytes"].notna() & configs["score"].notna()]
    fronts = []
    for _, group in measured.groupby(["dataset", "loss"], sort=False):
        best = float("-inf")
        for _, row in group.sort_values(["peak_bytes", "score"], ascending=[True, False]).iterrows():
            if row["score"] > best:
                best = row["score"]
                fronts.append(row)
    if not fronts:
        return configs.iloc[0:0]
    return _ordered(pd.DataFrame(fronts).reset_index(drop=True), "peak_bytes")


def _ordered(frame: pd.DataFrame, then: str) -> pd.DataFrame:
    rank = _loss_rank()
    order = frame["loss"].map(lambda loss: (rank(loss), loss))
    return frame.assign(_order=order).sort_values(["dataset", "_order", then]).drop(columns="_order")


def table2(configs: pd.DataFrame, dataset: str, budget_bytes: int | None, losses: Sequence[str]) -> pd.DataFrame:
    """The best configuration of each loss within the budget (None: any memory); dashes where nothing fits."""
    here = configs[configs["dataset"] == dataset]
    rows = []
    for loss in _loss_order(losses):
        mine = here[here["loss"] == loss]
        if loss not in REFERENCE_LOSSES and budget_bytes is not None:
            mine = mine[mine["peak_bytes"] <= budget_bytes]
        mine = mine[mine["score"].notna()]
        if mine.empty:
            missing = "no run fits" if budget_bytes else "no finished run (see every run below)"
            rows.append({"dataset": dataset, "loss": loss, "config": missing})
        else:
            rows.append(mine.loc[mine["score"].idxmax()].to_dict())
    return pd.DataFrame(rows, columns=configs.columns)


def _loss_rank() -> Callable[[str], tuple[int, int]]:
    """Sort key of a loss name: the registered losses by their card's ``report_rank``, then unknown names, then the
    reference rankings (popularity) last."""
    cards = _loss_cards()

    def rank(loss: str) -> tuple[int, int]:
        if loss in REFERENCE_LOSSES:
            return (2, 0)
        return (0, cards[loss].report_rank) if loss in cards else (1, 0)

    return rank


def _loss_order(losses: Sequence[str]) -> list[str]:
    rank = _loss_rank()
    return sorted(set(losses), key=lambda loss: (rank(loss), loss))


def budgets_of(frame: pd.DataFrame) -> list[int | None]:
    """The budgets the runs were given, smallest first; [None] when none was."""
    if "budget_bytes" not in frame:
        return [None]
    values = sorted({int(b) for b in frame["budget_bytes"].dropna()})
    return values or [None]


def paper_key(dataset: str) -> str | None:
    """The paper dataset a prepared dataset stands for, by name: 'gowalla', 'kindle-sample' -> 'kindle'."""
    head = dataset.lower().replace("-", "_").split("_")[0]
    kinds = {kind for card in _loss_cards().values() for kind in card.paper_results}
    return head if head in kinds else None


def paper_row(dataset: str, loss: str) -> tuple[float, ...] | None:
    """The paper's Table 2 numbers of a loss on the paper dataset a prepared one stands for (None: not published)."""
    key, cards = paper_key(dataset), _loss_cards()
    if key is None or loss not in cards:
        return None
    return cards[loss].paper_results.get(key)


# ---------------------------------------------------------------- sections: what every text format shows


@dataclass(frozen=True)
class Cell:
    text: str
    mark: str = ""  # "best", "second" or ""
    paper: str = ""  # the paper's value for this cell, if any


@dataclass(frozen=True)
class Section:
    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]
    notes: tuple[str, ...] = field(default_factory=tuple)


def fmt_number(value: Any, digits: int = 4) -> str:
    return "-" if value is None or pd.isna(value) else f"{value:.{digits}f}"


def fmt_memory(value: Any) -> str:
    return "-" if value is None or pd.isna(value) else format_bytes(value)


def fmt_seconds(value: Any) -> str:
    return "-" if value is None or pd.isna(value) else f"{value:.1f}"


def _marks(table: pd.DataFrame) -> dict[tuple[int, str], str]:
    """Best (and second best) of each metric among the ranked losses, at the shown precision."""
    marks = {}
    ranked = table[~table["loss"].isin(REFERENCE_LOSSES)]
    for column in METRIC_COLUMNS:
        shown = pd.to_numeric(ranked[column], errors="coerce").round(4).dropna()
        levels = sorted(set(shown), reverse=True)
        for place, level in zip(("best", "second"), levels, strict=False):
            marks.update({(index, column): place for index in shown[shown == level].index})
    return marks


def table2_section(configs: pd.DataFrame, dataset: str, budget_bytes: int | None, losses) -> Section:
    from rece_bench.budget.sizes import format_size

    table = table2(configs, dataset, budget_bytes, losses).reset_index(drop=True)
    marks = _marks(table)
    rows = []
    for index, row in table.iterrows():
        paper = paper_row(dataset, row["loss"]) or ()
        metrics = [
            Cell(fmt_number(row[c]), marks.get((index, c), ""), f"{paper[i]:.4f}" if paper else "")
            for i, c in enumerate(METRIC_COLUMNS)
        ]
        rest = (
            fmt_memory(row["peak_bytes"]),
            fmt_seconds(row["train_time_s"]),
            _precision(row),
            str(row["config"]),
            _count(row["seeds"]),
        )
        rows.append((Cell(row["loss"]), *metrics, *(Cell(text) for text in rest)))
    within = "at any memory"
    if budget_bytes is not None:
        within = f"within {format_size(budget_bytes)}"
        within += f" ({format_bytes(budget_bytes)})" if format_size(budget_bytes) != format_bytes(budget_bytes) else ""
    notes = ["best in bold, second underlined; picked by validation NDCG@10, test metrics shown"]
    if paper_key(dataset):
        notes.append(f"in parentheses: the paper's Table 2 on the full {paper_key(dataset)} dataset")
    return Section(
        f"{dataset}: Table 2, the best configuration of each loss {within}",
        ("loss", *METRIC_TITLES, "peak", "train time (s)", "precision", "configuration", "seeds"),
        tuple(rows),
        tuple(notes),
    )


def _precision(row: pd.Series) -> str:
    """The precision a row was trained in; '-' where nothing was trained (a reference ranking, an empty cell)."""
    value = row.get("precision")
    if row["loss"] in REFERENCE_LOSSES or value is None or pd.isna(value):
        return "-"
    return str(value)


def _count(value: Any) -> str:
    return "-" if value is None or pd.isna(value) else str(int(value))


FRONT_NOTE = (
    "a front keeps each configuration whose validation NDCG@10 beats every cheaper one's (chosen without the test "
    "set, as a user would); the test NDCG@10 shown beside it need not rise along the front"
)


def front_section(fronts: pd.DataFrame, dataset: str) -> Section:
    rows = []
    for _, row in fronts[fronts["dataset"] == dataset].iterrows():
        texts = (row["loss"], fmt_memory(row["peak_bytes"]), fmt_number(row["score"]), fmt_number(row["ndcg@10"]))
        rest = (fmt_seconds(row["train_time_s"]), _precision(row), row["config"])
        rows.append(tuple(Cell(text) for text in (*texts, *rest)))
    return Section(
        f"{dataset}: Pareto front of each loss, peak memory -> best validation NDCG@10",
        ("loss", "peak", "valid NDCG@10", "test NDCG@10", "train time (s)", "precision", "configuration"),
        tuple(rows),
        (FRONT_NOTE,),
    )


def report_sections(frame: pd.DataFrame, budget_bytes: int | None = None) -> list[Section]:
    """Per dataset and training setting (``setting_groups``): Table 2 for each budget of its runs (or the one
    given), then the Pareto fronts; then every run, when some did not end ok."""
    if frame.empty:
        return []
    sections = []
    for dataset in sorted(frame["dataset"].unique()):
        mine = frame[frame["dataset"] == dataset]
        for label, group in setting_groups(mine):
            sections += [_apart(section, label) for section in _setting_sections(group, dataset, budget_bytes)]
        if (mine["status"] != "ok").any():
            sections.append(runs_section(mine, dataset))
    return sections


def _setting_sections(frame: pd.DataFrame, dataset: str, budget_bytes: int | None) -> list[Section]:
    configs = configurations(frame)
    losses = list(frame["loss"].unique())
    sections = [
        table2_section(configs, dataset, budget, losses)
        for budget in ([budget_bytes] if budget_bytes is not None else budgets_of(frame))
    ]
    sections.append(front_section(pareto_fronts(configs), dataset))
    threads = {int(t) for t in frame.get("threads", pd.Series(dtype=float)).dropna()}
    if len(threads) == 1:  # one thread count per setting (it is part of the setting); shown beside the times
        note = f"train time: wall time with {threads.pop()} torch thread(s) per run (--threads)"
        sections = [dataclasses.replace(s, notes=(*s.notes, note)) for s in sections]
    return sections


# ---------------------------------------------------------------- training settings: like is compared with like

# What a budget or a sweep chooses within one setting (so it is compared), beside the loss's own parameters.
CHOSEN_KNOBS = ("batch_size", "seed", "budget_bytes")
SETTING_FIELDS = ("device", "precision", "threads", "data_id")  # fields of a result row that a setting includes


def setting_of(row: pd.Series) -> dict[str, Any]:
    """The training setting of a run: every hyperparameter that no budget or sweep chooses (epochs, patience,
    max_len, the model's shape, dropout, lr, precision...), its device and threads, and its data's preparation."""
    params = row["params"] if isinstance(row["params"], dict) else {}
    setting = {k: v for k, v in params.items() if k not in CHOSEN_KNOBS and not k.startswith("loss.")}
    for name in SETTING_FIELDS:
        value = row.get(name)
        if value is not None and not (isinstance(value, float) and pd.isna(value)):
            setting[name] = int(value) if name == "threads" else value
    return setting


def setting_groups(frame: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """The runs of one dataset grouped by training setting, each with a label naming what differs from the other
    groups ('' when there is one group). Reference rankings (popularity) are shown in every group."""
    reference = frame["loss"].isin(REFERENCE_LOSSES)
    keys = frame.apply(lambda row: json.dumps(setting_of(row), sort_keys=True, default=str), axis=1)
    distinct = list(dict.fromkeys(keys[~reference]))
    if len(distinct) <= 1:
        return [("", frame)]
    settings = [json.loads(key) for key in distinct]
    names = sorted({name for setting in settings for name in setting})
    differ = [n for n in names if len({json.dumps(s.get(n), default=str) for s in settings}) > 1]
    return [
        (", ".join(f"{n} {s.get(n, '-')}" for n in differ), frame[reference | (keys == key)])
        for key, s in zip(distinct, settings, strict=True)
    ]


def _apart(section: Section, label: str) -> Section:
    """A section of one of several training settings: its title says which, a note why."""
    if not label:
        return section
    note = "runs of different training settings are never compared: each setting has its own tables"
    return dataclasses.replace(section, title=f"{section.title} [{label}]", notes=(*section.notes, note))


RUNS_NOTE = (
    "only ok runs enter the tables above; running: its process is alive (or on another host, where it cannot be "
    "checked); killed: its process ended without a final status"
)


def runs_section(frame: pd.DataFrame, dataset: str) -> Section:
    """Every run of ``dataset`` with its status, shown when some did not end ok (nothing is left unsaid)."""
    from rece_bench.errors import one_line

    rows = []
    for _, row in frame.sort_values(["loss", "created_at"], kind="stable").iterrows():
        ndcg = row.get("ndcg@10")
        texts = (row["loss"], config_label(row["params"]), str(row["seed"]), row["status"], _count(row["epochs"]))
        rows.append(tuple(Cell(text) for text in (*texts, fmt_number(ndcg), one_line(row["message"]) or "-")))
    return Section(
        f"{dataset}: every run and its status",
        ("loss", "configuration", "seed", "status", "epochs", "test NDCG@10", "message"),
        tuple(rows),
        (RUNS_NOTE,),
    )
