"""Downloads against a local HTTP server on 127.0.0.1 that each test starts; nothing touches the internet."""

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from rece_bench.data.download import DownloadConfig, cached_or_download, download
from rece_bench.errors import UserError

BODY = bytes(range(256)) * 400  # 100 KiB
SHA = hashlib.sha256(BODY).hexdigest()
FAST = DownloadConfig(retries=3, timeout_s=5, chunk_bytes=4096, backoff_s=0.01)


class Handler(BaseHTTPRequestHandler):
    cuts_left = 0  # how many responses stop halfway
    ranges: list  # the Range header of every request

    def do_GET(self):  # noqa: N802 - the http.server name
        type(self).ranges.append(self.headers.get("Range"))
        if self.path != "/file.bin":
            self.send_error(404, "Not Found")
            return
        start = int(self.headers["Range"].split("=")[1].rstrip("-")) if self.headers.get("Range") else 0
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(BODY) - 1}/{len(BODY)}")
        self.send_header("Content-Length", str(len(BODY) - start))
        self.end_headers()
        body = BODY[start:]
        if type(self).cuts_left > 0:
            type(self).cuts_left -= 1
            body = body[: len(body) // 2]
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    handler = type("H", (Handler,), {"cuts_left": 0, "ranges": []})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield handler, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_download_verifies_and_reports_progress(server, tmp_path):
    handler, base = server
    seen = []
    path = download(
        f"{base}/file.bin",
        tmp_path / "f.bin",
        sha256=SHA,
        size_bytes=len(BODY),
        progress=lambda done, total: seen.append((done, total)),
        config=FAST,
    )
    assert path.read_bytes() == BODY
    assert seen[-1] == (len(BODY), len(BODY))
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_a_cut_connection_resumes_with_a_range_request(server, tmp_path):
    handler, base = server
    handler.cuts_left = 2
    path = download(f"{base}/file.bin", tmp_path / "f.bin", sha256=SHA, config=FAST)
    assert path.read_bytes() == BODY
    assert handler.ranges[0] is None and all(r and r.startswith("bytes=") for r in handler.ranges[1:])
    assert len(handler.ranges) == 3


def test_a_part_left_by_an_earlier_run_is_resumed(server, tmp_path):
    handler, base = server
    (tmp_path / "f.bin.part").write_bytes(BODY[:1000])
    download(f"{base}/file.bin", tmp_path / "f.bin", sha256=SHA, config=FAST)
    assert handler.ranges == ["bytes=1000-"]
    assert (tmp_path / "f.bin").read_bytes() == BODY


def test_a_wrong_checksum_fails_and_leaves_no_file(server, tmp_path):
    _, base = server
    with pytest.raises(UserError, match="sha256 does not match.*removed"):
        download(f"{base}/file.bin", tmp_path / "f.bin", sha256="0" * 64, config=FAST)
    with pytest.raises(UserError, match="size 102400 bytes, expected 5"):
        download(f"{base}/file.bin", tmp_path / "f.bin", size_bytes=5, config=FAST)
    assert list(tmp_path.iterdir()) == []


def test_a_404_says_what_to_do(server, tmp_path):
    _, base = server
    with pytest.raises(UserError, match=r"HTTP 404 .*--raw PATH"):
        download(f"{base}/missing.gz", tmp_path / "m.gz", config=FAST)
    assert list(tmp_path.iterdir()) == []


def test_an_unreachable_host_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="cannot reach"):
        download("http://127.0.0.1:9/x", tmp_path / "x", config=FAST)


def test_a_cached_file_is_not_fetched_again(server, tmp_path):
    handler, base = server
    (tmp_path / "f.bin").write_bytes(BODY)
    cached_or_download(f"{base}/file.bin", tmp_path / "f.bin", sha256=SHA, config=FAST)
    assert handler.ranges == []


@pytest.mark.parametrize("status", [503, 429, 502])
def test_a_busy_or_failing_server_is_retried_until_it_serves(server, tmp_path, status):
    """Issue 23: the server fails twice (5xx or 429), then serves; the download goes through."""
    handler, base = server
    failures = [status, status]
    serve = handler.do_GET

    def flaky(self):
        if failures:
            type(self).ranges.append("failed")
            self.send_response(failures.pop())
            self.send_header("Retry-After", "0")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        serve(self)

    handler.do_GET = flaky
    path = download(f"{base}/file.bin", tmp_path / "f.bin", sha256=SHA, config=FAST)
    assert path.read_bytes() == BODY and handler.ranges == ["failed", "failed", None]


def test_a_server_that_keeps_failing_is_one_error_after_the_retries(server, tmp_path):
    handler, base = server

    def down(self):
        type(self).ranges.append("failed")
        self.send_error(503, "Service Unavailable")

    handler.do_GET = down
    with pytest.raises(UserError, match=r"HTTP 503 .*run the command again later, or pass --raw PATH"):
        download(f"{base}/file.bin", tmp_path / "f.bin", config=FAST)
    assert len(handler.ranges) == FAST.retries + 1 and list(tmp_path.iterdir()) == []
