"""The Figure 4 analogue: NDCG@10 against peak memory (log scale) and against training time, one line per loss.

The points of a loss are its Pareto front as the report chooses it, by *validation* NDCG@10 (the test set picks
nothing); they are drawn at their *test* NDCG@10, so a line can fall where a larger configuration validated
better but tested worse. The figure says so under its title.

matplotlib is imported inside the functions, with the Agg backend (no display needed), so importing this module
costs nothing. The PNG is written atomically.
"""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd

from rece_bench.errors import UserError
from rece_bench.io import atomic_write_bytes

GIB, MIB = 2**30, 2**20
FRONT_CAPTION = (
    "Points: each loss's Pareto front, chosen by validation NDCG@10; drawn at test NDCG@10, which need not rise "
    "along a front"
)


def fronts_figure(fronts: pd.DataFrame):
    """One row of two axes per dataset: (NDCG@10 vs peak memory, log x; GiB, or MiB below 1 GiB) and (NDCG@10 vs
    training time, point size = memory). Each loss is one line in each axes, its label the loss name."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    if fronts.empty:
        raise UserError("no Pareto front to plot: no run with status ok and a measured peak; run a sweep first")
    datasets = sorted(fronts["dataset"].unique())
    figure = Figure(figsize=(11, 4.2 * len(datasets)), layout="constrained")
    axes = figure.subplots(len(datasets), 2, squeeze=False)
    largest = float(fronts["peak_bytes"].max())
    unit, scale = ("GiB", GIB) if largest >= GIB else ("MiB", MIB)
    colours = loss_colours(fronts["loss"])
    for row, dataset in enumerate(datasets):
        memory_ax, time_ax = axes[row]
        for loss, front in fronts[fronts["dataset"] == dataset].groupby("loss", sort=False):
            _draw_loss(memory_ax, time_ax, str(loss), front, largest, scale, colours[loss])
        _extend_dashed(memory_ax)
        _label(memory_ax, f"{dataset}: NDCG@10 vs peak memory", f"peak memory ({unit}, log scale)")
        memory_ax.set_xscale("log")
        _cover_points(memory_ax)
        _plain_ticks(memory_ax)
        _label(time_ax, f"{dataset}: NDCG@10 vs training time", "training time (s); point size: peak memory")
    figure.suptitle(FRONT_CAPTION, fontsize="small")
    return figure


def loss_colours(losses: pd.Series) -> dict[str, str]:
    """One colour per loss for the whole figure (every dataset), in the report's order of losses."""
    from rece_bench.report.tables import _loss_order

    return {loss: f"C{i % 10}" for i, loss in enumerate(_loss_order(list(losses.unique())))}


def _cover_points(ax) -> None:
    """The log axis from a little left of the leftmost point to the right end of the dashed lines."""
    xs = [float(x) for line in ax.get_lines() for x in line.get_xdata()]
    ax.set_xlim(min(xs) / 1.3, max(xs) * 1.05)


def _draw_loss(memory_ax, time_ax, loss: str, front: pd.DataFrame, largest_bytes: float, scale: float, colour) -> None:
    front = front.sort_values("peak_bytes")
    (line,) = memory_ax.plot(front["peak_bytes"] / scale, front["ndcg@10"], marker="o", label=loss, color=colour)
    by_time = front.sort_values("train_time_s")
    time_ax.plot(by_time["train_time_s"], by_time["ndcg@10"], color=line.get_color(), alpha=0.6, label=loss)
    sizes = 20 + 200 * by_time["peak_bytes"] / max(largest_bytes, 1.0)
    time_ax.scatter(by_time["train_time_s"], by_time["ndcg@10"], s=sizes, color=line.get_color())


def _extend_dashed(ax) -> None:
    """As in the paper: a dashed line from a loss's last point on, where no larger configuration did better."""
    lines = [line for line in ax.get_lines() if not line.get_label().startswith("_")]
    right = max(float(line.get_xdata()[-1]) for line in lines) * 1.3
    for line in lines:
        x, y = float(line.get_xdata()[-1]), float(line.get_ydata()[-1])
        ax.plot([x, right], [y, y], linestyle="--", color=line.get_color(), label="_nolegend_")


def _plain_ticks(ax) -> None:
    """30 and 100 rather than 3x10^1 and 10^2 on the log axis."""
    from matplotlib.ticker import FuncFormatter

    plain = FuncFormatter(lambda value, _: f"{value:g}")
    ax.xaxis.set_major_formatter(plain)
    ax.xaxis.set_minor_formatter(plain)


def _label(ax, title: str, xlabel: str) -> None:
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test NDCG@10")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")


def save_figure(figure, path: Path, dpi: int = 120) -> Path:
    """Render to PNG in memory, then write it atomically."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise UserError(f"--plot {path}: the figure is a PNG: give a file name ending in .png")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    try:
        atomic_write_bytes(path, buffer.getvalue())
    except OSError as exc:
        raise UserError(f"cannot write the plot to {path}: {exc.strerror}: pass a writable path") from None
    return path


def plot_fronts(frame: pd.DataFrame, path: Path) -> Path:
    """Result rows -> Pareto fronts -> the figure, saved as ``path``."""
    from rece_bench.report.tables import configurations, pareto_fronts

    return save_figure(fronts_figure(pareto_fronts(configurations(by_setting(frame)))), path)


def by_setting(frame: pd.DataFrame) -> pd.DataFrame:
    """Runs of different training settings of one dataset as if of different datasets ('gowalla [epochs 3]'), so
    that each setting gets its own axes and no front mixes them (``tables.setting_groups``)."""
    from rece_bench.report.tables import setting_groups

    if frame.empty:
        return frame
    parts = []
    for dataset in frame["dataset"].unique():
        for label, group in setting_groups(frame[frame["dataset"] == dataset]):
            parts.append(group.assign(dataset=f"{dataset} [{label}]" if label else dataset))
    return pd.concat(parts, ignore_index=True)
