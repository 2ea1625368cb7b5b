"""Every table the CLI prints is readable at 80 columns and at the piped width: no number split, no column dropped."""

from __future__ import annotations

import re
from collections import Counter

import pytest
from typer.testing import CliRunner

from rece_bench.cli import app
from rece_bench.cli import layout as tables
from tests.test_report import hand_made_results

NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
BOX = re.compile(r"[\u2500-\u257f]")  # box-drawing characters
LONG_WORD = 40  # a longer word (a URL) may fold in the record layout; numbers are never that long


def _plain_cells(table) -> list[str]:
    return [tables._plain(column.header) for column in table.columns] + [
        tables._plain(cell) for column in table.columns for cell in column.cells
    ]


def _words(text: str) -> list[str]:
    return BOX.sub(" ", text).split()


@pytest.fixture()
def printed(monkeypatch):
    """The tables the CLI handed to fit_table, each with the width it was laid out for."""
    seen = []
    real = tables.fit_table

    def recording(table, width):
        seen.append((table, width))
        return real(table, width)

    monkeypatch.setattr(tables, "fit_table", recording)
    return seen


def _check(output: str, seen: list, width: int) -> None:
    assert seen, "no table printed"
    assert all(w == width for _, w in seen), [w for _, w in seen]
    too_wide = [line for line in output.splitlines() if len(line) > width]
    assert not too_wide, too_wide
    out_numbers, out_words = Counter(NUMBER.findall(output)), Counter(_words(output))
    for table, _ in seen:
        cells = _plain_cells(table)
        numbers = Counter(n for cell in cells for n in NUMBER.findall(cell))
        assert not numbers - out_numbers, f"numbers split or dropped: {sorted((numbers - out_numbers).elements())}"
        words = Counter(w for cell in cells for w in cell.split() if len(w) <= LONG_WORD)
        assert not words - out_words, f"words split or dropped: {sorted((words - out_words).elements())}"


WIDTHS = [({"COLUMNS": "80"}, 80), ({"COLUMNS": None}, 160)]  # 160: the piped default, cli.common.PIPED_WIDTH


def _invoke(args, env):
    result = CliRunner().invoke(app, [str(a) for a in args], env=env)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize(("env", "width"), WIDTHS)
def test_report_tables_keep_every_number_whole(tmp_path, printed, env, width):
    root = hand_made_results(tmp_path)  # several losses, the paper's values beside gowalla's, two budgets
    output = _invoke(["report", "--results-dir", root], env)
    assert len(printed) >= 4  # two Table 2s, the fronts, the runs
    _check(output, printed, width)


@pytest.mark.parametrize(("env", "width"), WIDTHS)
def test_prepare_datasets_and_losses_tables_keep_every_number_whole(tmp_path, printed, env, width):
    args = ["--users", "300", "--items", "120", "--interactions", "6000", "--data-dir", tmp_path]
    output = _invoke(["prepare", "synthetic", *args], env)  # its first column has no header
    output += _invoke(["datasets", "--data-dir", tmp_path], env)
    output += _invoke(["losses"], env)
    _check(output, printed, width)


@pytest.mark.parametrize(("env", "width"), WIDTHS)
def test_bench_tables_keep_every_number_whole(tmp_path, tiny_data_root, printed, env, width):
    output = _invoke(["bench-loss", "--items", "60,1e3", "--positions", "30", "--dim", "8", "--loss", "rece",
                      "--loss", "ce", "--loss", "bce", "--param", "rece.rounds=2",
                      "--param", "bce.n_negatives=16", "--repeats", "1", "--results-dir", tmp_path], env)  # fmt: skip
    output += _invoke(["bench-step", "--dataset", "tiny", "--config", "ce", "--config",
                       "rece:n_extra_chunks=3,rounds=2", "--config", "bce:n_negatives=16", "--batch-size", "16",
                       "--max-len", "12", "--steps", "1", "--warmup", "0", "--data-dir", tiny_data_root,
                       "--results-dir", tmp_path], env)  # fmt: skip
    _check(output, printed, width)


def test_each_layout_in_turn_as_the_console_narrows():
    """Wide: the table; narrower: split into parts that repeat the key column; narrowest: a record per row."""
    from rich.console import Console, Group
    from rich.table import Table

    table = Table(title="t")
    table.add_column("loss")
    for n in range(6):
        table.add_column(f"metric {n}", justify="right")
    table.add_row("ce", *(f"0.{n}234567" for n in range(6)))
    table.add_row("rece", *(f"1{n}.5 (0.0449)" for n in range(6)))

    def render(width):
        fitted = tables.fit_table(table, width)
        console = Console(width=width, record=True, file=None, color_system=None)
        with console.capture() as capture:
            console.print(fitted)
        return fitted, capture.get()

    wide, text = render(160)
    assert isinstance(wide, Table) and "10.5 (0.0449)" in text  # the whole cell on one line
    parts, text = render(60)
    assert isinstance(parts, Group) and text.count("rece") == len(parts.renderables) >= 2
    records, text = render(12)
    assert isinstance(records, Table) and not records.show_header and "metric 5" in text
    for width in (160, 60, 24, 12):
        numbers = NUMBER.findall(render(width)[1])
        assert all(n in numbers for n in ("0.5234567", "15.5", "0.0449")), (width, numbers)


def test_parts_number_the_rows_when_the_key_column_repeats():
    """Two rece rows (bench-step's two RECE configurations): each part shows the row number beside the loss."""
    from rich.console import Console, Group
    from rich.table import Table

    table = Table()
    for column in ("loss", "params", "step s", "peak", "time vs ce"):
        table.add_column(column, justify="left" if column in ("loss", "params") else "right")
    table.add_row("rece", "n_extra_chunks=3, rounds=8", "2.48 (2.35-2.86)", "339.0 MiB", "0.436")
    table.add_row("rece", "n_extra_chunks=1, rounds=1", "0.37 (0.35-0.38)", "269.0 MiB", "0.064")
    fitted = tables.fit_table(table, 40)
    console = Console(width=40, file=None, color_system=None)
    with console.capture() as capture:
        console.print(fitted)
    lines = capture.get().splitlines()
    assert isinstance(fitted, Group) and len(fitted.renderables) >= 2
    assert all(part.columns[0].header == "#" and part.columns[1].header == "loss" for part in fitted.renderables)
    assert sum(bool(re.match(r"\W*2\W+rece\b", line)) for line in lines) == len(fitted.renderables)
