"""The data commands through typer's CliRunner: tables on success, else one-line errors with exit code 2."""

import gzip
import hashlib
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest
from typer.testing import CliRunner

from rece_bench.cli import app
from rece_bench.data.registry import DATASETS, DatasetCard
from tests.data import BEAUTY_SAMPLE, GOWALLA_SAMPLE, shared_file

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "160"})


def assert_one_line_error(result, *fragments):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_prepare_gowalla_shows_its_counts_beside_the_paper(tmp_path):
    result = run("prepare", "gowalla", "--raw", shared_file(GOWALLA_SAMPLE), "--data-dir", tmp_path)
    assert result.exit_code == 0, result.output
    for number in ("819", "5,252", "59,127", "27,516", "173,511", "2,627,663", "density", "test users"):
        assert number in result.stdout
    listing = run("datasets", "--data-dir", tmp_path)
    gowalla_row = next(line for line in listing.stdout.splitlines() if line.startswith("│ gowalla"))
    assert "yes" in gowalla_row and "27,516" in gowalla_row


def test_prepare_beauty_leave_one_out(tmp_path):
    result = run("prepare", "beauty", "--raw", shared_file(BEAUTY_SAMPLE), "--data-dir", tmp_path)
    assert result.exit_code == 0, result.output
    assert "22,363 / 198,502" in result.stdout and "split: loo" in result.stdout
    again = run("prepare", "beauty", "--raw", shared_file(BEAUTY_SAMPLE), "--data-dir", tmp_path)
    assert_one_line_error(again, "--force")


def test_prepare_synthetic_with_sizes(tmp_path):
    result = run(
        "prepare",
        "synthetic",
        "--users",
        200,
        "--items",
        150,
        "--interactions",
        8000,
        "--seed",
        3,
        "--name",
        "tiny",
        "--data-dir",
        tmp_path,
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "tiny" / "meta.json").is_file()


def behance_file(path, lines):
    path.write_text(
        "".join(f"u{n % 30} i{(n // 30) % 40} {1_300_000_000 + (n % 30) * 1000 + n // 30}\n" for n in range(3000))
        + lines
    )
    return path


def test_malformed_lines_are_reported_and_strict_stops(tmp_path):
    raw = behance_file(tmp_path / "b.txt", "oops\n")
    data = tmp_path / "data"
    result = run("prepare", "behance", "--raw", raw, "--data-dir", data, "--min-user-items", 5)
    assert result.exit_code == 0, result.output
    assert "skipped 1 malformed line" in result.stderr and "line 3001" in result.stderr
    strict = run("prepare", "behance", "--raw", raw, "--data-dir", data, "--strict", "--force", "--name", "s")
    assert_one_line_error(strict, "line 3001", "--strict")
    assert sorted(p.name for p in data.iterdir()) == ["behance"]


CHECKINS = gzip.compress(
    "".join(f"u{n % 50}\t2010-10-19T23:{n % 60:02d}:27Z\t1\t2\tl{n * 7919 % 1009}\n" for n in range(5000)).encode()
)


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (CHECKINS[: len(CHECKINS) // 2], "truncated or corrupt gzip"),
        (b"", "is empty"),
        (b"1 2 3 4\n" * 300, "no readable gowalla"),
    ],
    ids=["truncated-gzip", "empty", "wrong-format"],
)
def test_bad_raw_files_give_one_line_and_write_nothing(tmp_path, content, fragment):
    raw = tmp_path / "raw.gz"
    raw.write_bytes(content)
    result = run("prepare", "gowalla", "--raw", raw, "--data-dir", tmp_path / "data")
    assert_one_line_error(result, fragment)
    assert not (tmp_path / "data").exists() or list((tmp_path / "data").iterdir()) == []


def test_custom_missing_columns_and_bad_options(tmp_path):
    table = tmp_path / "t.csv"
    table.write_text("user,item,when\na,b,1\n")
    result = run("prepare", "custom", "--file", table, "--time-col", "ts", "--data-dir", tmp_path)
    assert_one_line_error(result, "lacks column(s) user_id, item_id, ts")
    assert_one_line_error(run("prepare", "nope", "--data-dir", tmp_path), "unknown dataset 'nope'")
    assert_one_line_error(run("prepare", "gowalla", "--no-filter", "--k-core", "--data-dir", tmp_path), "--no-filter")
    assert_one_line_error(run("prepare", "gowalla", "--users", 5, "--data-dir", tmp_path), "synthetic only")
    absent = tmp_path / "absent.gz"
    assert_one_line_error(run("prepare", "gowalla", "--raw", absent, "--data-dir", tmp_path), "does not exist")


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def served(tmp_path, monkeypatch):
    """A local HTTP server on 127.0.0.1 serving a gzip Behance-format file, and a card that points at it."""
    folder = tmp_path / "www"
    folder.mkdir()
    body = gzip.compress(behance_file(tmp_path / "src.txt", "").read_bytes())
    (folder / "toy.gz").write_bytes(body)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietHandler, directory=str(folder)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"

    def card(path="toy.gz", sha256=hashlib.sha256(body).hexdigest()):
        toy = DatasetCard(
            "toy",
            "toy",
            base,
            ("behance",),
            "temporal",
            url=f"{base}/{path}",
            filename="toy.gz",
            sha256=sha256,
        )
        monkeypatch.setitem(DATASETS, "toy", toy)

    yield card
    httpd.shutdown()
    httpd.server_close()


def test_prepare_downloads_into_the_raw_cache(served, tmp_path):
    served()
    result = run("prepare", "toy", "--data-dir", tmp_path / "data")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "data" / "raw" / "toy.gz").is_file()
    assert (tmp_path / "data" / "toy" / "meta.json").is_file()


def test_prepare_download_failures_are_one_line(served, tmp_path):
    served(sha256="0" * 64)
    assert_one_line_error(run("prepare", "toy", "--data-dir", tmp_path / "data"), "sha256 does not match")
    assert list((tmp_path / "data" / "raw").iterdir()) == []
    served(path="gone.gz")
    assert_one_line_error(run("prepare", "toy", "--data-dir", tmp_path / "data"), "HTTP 404", "--raw PATH")
