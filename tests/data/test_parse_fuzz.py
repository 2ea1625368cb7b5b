"""Fuzzing the raw formats: random bytes into every parser (a result or a clean UserError, never anything else),
and random truncations of the real samples, random CSVs and random bytes through `rece-bench prepare`.

Deterministic (``derandomize=True``) and modest in examples, so the whole file runs in seconds.
"""

import functools
import gzip
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from rece_bench.cli import app
from rece_bench.data import parse
from rece_bench.data.parse import Columns
from rece_bench.data.store import META_FILE, read_dataset
from rece_bench.errors import UserError
from tests.data import BEAUTY_SAMPLE, GOWALLA_SAMPLE, SHARED_DATA, shared_file

COLUMNS = Columns("u", "i", "t")
PARSERS = [(name, lambda path, f=f: f(path)) for name, f in parse.PARSERS.items()] + [
    (name, lambda path, f=f: f(path, COLUMNS)) for name, f in parse.TABLE_PARSERS.items()
]
TEXTY = st.text(alphabet="ab01 ,\t\n{}'\":-TZ.", max_size=300).map(str.encode)
PAYLOAD = st.one_of(
    st.binary(max_size=400),
    TEXTY,
    TEXTY.map(gzip.compress),
    TEXTY.map(lambda b: gzip.compress(b)[: max(len(b) // 2, 3)]),
    st.binary(max_size=200).map(lambda b: parse.GZIP_MAGIC + b),
    st.binary(max_size=200).map(lambda b: b"PAR1" + b + b"PAR1"),
)


@settings(
    max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(payload=PAYLOAD, which=st.sampled_from(PARSERS), strict=st.booleans())
def test_random_bytes_give_a_result_or_a_user_error(tmp_path, payload, which, strict):
    name, parser = which
    path = tmp_path / "input.bin"
    path.write_bytes(payload)
    try:
        result = parser(path) if not strict else _strict(name, path)
    except UserError as exc:
        assert "\n" not in str(exc)
        return
    assert result.interactions > 0
    assert list(result.frame.columns) == ["user", "item", "timestamp"]


def _strict(name, path):
    function = parse.PARSERS.get(name)
    return function(path, strict=True) if function else parse.TABLE_PARSERS[name](path, COLUMNS, strict=True)


# ---------------------------------------------------------------- through `prepare`, as a user would run it
#
# Each example runs the real command in-process: it either prepares a whole dataset or exits 2 with one line, and
# it never leaves a partial dataset (a staging folder, or a dataset folder without all of its files).

runner = CliRunner()
DATASET_FILES = {META_FILE, *(f"{part}.parquet" for part in ("train", "valid", "test", "user_map", "item_map"))}
FUZZ = settings(
    max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
# at most this much of a real sample's text: enough for whole users, small enough to parse in milliseconds
SAMPLE_PREFIX_BYTES = 400_000


@functools.cache
def sample_text(name: str) -> bytes:
    raw = shared_file(name).read_bytes()
    return gzip.decompress(raw) if raw[:2] == parse.GZIP_MAGIC else raw


def prepare_ok_or_one_line(args: list[str], name: str) -> None:
    """Run `prepare ... --data-dir D` in a fresh folder; a whole dataset or one error line, nothing between."""
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder) / "data"
        result = runner.invoke(app, ["prepare", *args, "--data-dir", str(data)])
        assert (
            "Traceback" not in result.output and result.exception is None or isinstance(result.exception, SystemExit)
        ), result.output
        left = sorted(p.name for p in data.iterdir()) if data.exists() else []
        if result.exit_code == 0:
            assert left == [name] and {p.name for p in (data / name).iterdir()} == DATASET_FILES
            assert len(read_dataset(data, name).train) > 0
        else:
            assert result.exit_code == 2, result.output
            lines = [line for line in result.stderr.splitlines() if line.strip()]
            assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
            assert left == [], left  # no staging folder, no half dataset


CUTS = st.tuples(st.integers(0, SAMPLE_PREFIX_BYTES), st.sampled_from(["plain", "gzip", "cut-gzip"]), st.booleans())


@pytest.mark.skipif(not (SHARED_DATA / GOWALLA_SAMPLE).is_file(), reason="the real samples are in ../shared/data")
@FUZZ
@given(which=st.sampled_from([("gowalla", GOWALLA_SAMPLE), ("beauty", BEAUTY_SAMPLE)]), cut=CUTS)
def test_truncated_real_samples_prepare_or_fail_in_one_line(tmp_path, which, cut):
    dataset, sample = which
    length, packing, no_filter = cut
    text = sample_text(sample)[:length]
    payload = text if packing == "plain" else gzip.compress(text)
    if packing == "cut-gzip":
        payload = payload[: max(len(payload) * 2 // 3, 2)]
    raw = tmp_path / f"{dataset}-cut.txt"
    raw.write_bytes(payload)
    prepare_ok_or_one_line([dataset, "--raw", str(raw), *(["--no-filter"] if no_filter else [])], dataset)


CELL = st.one_of(
    st.integers(-5, 40).map(str),
    st.sampled_from(["", " ", "u1", "i2", "2020-01-01", "2020-01-01T00:00:00Z", "1e20", "nan", '"a,b"', "x\ty"]),
    st.text(alphabet="ab01:-. ", max_size=6),
)
ROW = st.lists(CELL, min_size=0, max_size=5)


@st.composite
def random_csv(draw) -> str:
    header = draw(st.permutations(["user_id", "item_id", "timestamp", "extra"]))
    header = header[: draw(st.integers(2, 4))]
    rows = draw(st.lists(ROW, max_size=60))
    users = draw(st.integers(1, 8))
    regular = [f"u{n % users},i{n % 13},{1_600_000_000 + n}" for n in range(draw(st.integers(0, 200)))]
    body = ["user_id,item_id,timestamp", *regular] if draw(st.booleans()) else [",".join(header)]
    return "\n".join([*body, *(",".join(row) for row in rows)]) + draw(st.sampled_from(["", "\n", "\r\n"]))


@FUZZ
@given(text=random_csv(), no_filter=st.booleans(), split=st.sampled_from([None, "temporal", "loo"]))
def test_random_csvs_prepare_custom_or_fail_in_one_line(tmp_path, text, no_filter, split):
    table = tmp_path / "mine.csv"
    table.write_text(text)
    args = ["custom", "--file", str(table), "--name", "mine", *(["--no-filter"] if no_filter else [])]
    prepare_ok_or_one_line([*args, *(["--split", split] if split else [])], "mine")


@FUZZ
@given(payload=PAYLOAD, fmt=st.sampled_from(sorted(parse.PARSERS)), no_filter=st.booleans())
def test_random_bytes_in_every_raw_format_prepare_or_fail_in_one_line(tmp_path, payload, fmt, no_filter):
    from rece_bench.data.registry import DATASETS

    dataset = next(card.name for card in DATASETS.values() if fmt in card.raw_formats and card.downloadable)
    raw = tmp_path / "raw.bin"
    raw.write_bytes(payload)
    args = [dataset, "--raw", str(raw), "--format", fmt, *(["--no-filter"] if no_filter else [])]
    prepare_ok_or_one_line(args, dataset)


@FUZZ
@given(payload=PAYLOAD, ext=st.sampled_from(sorted(parse.TABLE_PARSERS)), no_filter=st.booleans())
def test_random_bytes_as_a_custom_table_prepare_or_fail_in_one_line(tmp_path, payload, ext, no_filter):
    table = tmp_path / f"mine.{ext}"
    table.write_bytes(payload)
    args = ["custom", "--file", str(table), "--name", "mine", "--user-col", "u", "--item-col", "i", "--time-col", "t"]
    prepare_ok_or_one_line([*args, *(["--no-filter"] if no_filter else [])], "mine")
