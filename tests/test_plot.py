"""The Figure 4 analogue: a valid PNG with one line per loss in each axes."""

from __future__ import annotations

import pandas as pd
import pytest
from typer.testing import CliRunner

from rece_bench.cli import app
from rece_bench.errors import UserError
from rece_bench.report.plot import fronts_figure, plot_fronts, save_figure
from rece_bench.report.tables import configurations, pareto_fronts, results_frame
from rece_bench.results import read_results
from tests.test_report import hand_made_results

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
runner = CliRunner()


def _fronts(tmp_path) -> pd.DataFrame:
    return pareto_fronts(configurations(results_frame(read_results(hand_made_results(tmp_path)))))


def _legend_lines(ax) -> list[str]:
    return [line.get_label() for line in ax.get_lines() if not line.get_label().startswith("_")]


def test_each_axes_has_one_line_per_loss_with_a_log_memory_axis(tmp_path):
    figure = fronts_figure(_fronts(tmp_path))
    memory_ax, time_ax = figure.axes
    assert sorted(_legend_lines(memory_ax)) == sorted(_legend_lines(time_ax)) == ["bce", "ce", "rece"]
    assert memory_ax.get_xscale() == "log" and time_ax.get_xscale() == "linear"
    rece = next(line for line in memory_ax.get_lines() if line.get_label() == "rece")
    assert list(rece.get_ydata()) == pytest.approx([0.026, 0.031])  # the two points of its front, cheapest first


def test_the_plot_file_is_a_valid_png(tmp_path):
    import matplotlib.image

    path = plot_fronts(results_frame(read_results(hand_made_results(tmp_path / "results"))), tmp_path / "f.png")
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    height, width, _ = matplotlib.image.imread(path).shape
    assert width > 800 and height > 300
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary file left


def test_bad_plot_requests_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="ending in .png"):
        save_figure(fronts_figure(_fronts(tmp_path)), tmp_path / "f.jpg")
    with pytest.raises(UserError, match="no Pareto front"):
        fronts_figure(_fronts(tmp_path).iloc[0:0])


def test_cli_report_plot_writes_the_png(tmp_path):
    root = hand_made_results(tmp_path / "results")
    result = runner.invoke(app, ["report", "--results-dir", str(root), "--plot", str(tmp_path / "fronts.png")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "fronts.png").read_bytes()[:8] == PNG_SIGNATURE
