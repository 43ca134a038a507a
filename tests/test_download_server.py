"""A real HTTP file server on 127.0.0.1 for the download tests and bench/download.py.

`RangeFileServer` serves named byte strings or files with HTTP Range support and knobs that
mimic real-world trouble: cut the connection after N body bytes, ignore Range (answer 200),
answer 503 a few times. It records every request (path, Range header, status, bytes sent), so
tests can assert that a resumed download asked for the right range and moved only the missing
bytes. The tests in this file check the server itself, since the other tests rely on it.
"""

from __future__ import annotations

import http.client
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

CHUNK = 1 << 20


@dataclass
class Served:
    """One request as the server saw it."""

    path: str
    range: str | None
    status: int
    bytes_sent: int = 0


@dataclass
class RangeFileServer:
    """Serve ``files`` (name -> bytes or Path) at ``http://127.0.0.1:PORT/NAME``.

    Knobs (change them between requests): ``cut_after[name] = [n1, n2, ...]`` cuts the next
    responses for ``name`` after n1, then n2 body bytes (one entry used per request);
    ``ignore_range`` answers 200 with the whole file; ``fail_statuses[name] = [503, ...]``
    answers those statuses first.
    """

    files: dict[str, bytes | Path] = field(default_factory=dict)
    cut_after: dict[str, list[int]] = field(default_factory=dict)
    fail_statuses: dict[str, list[int]] = field(default_factory=dict)
    ignore_range: bool = False
    log: list[Served] = field(default_factory=list)

    def __post_init__(self):
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output quiet
                pass

            def do_GET(self):
                server._handle(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    # -- lifecycle ------------------------------------------------------------------------------
    def __enter__(self) -> "RangeFileServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"

    def requests_for(self, name: str) -> list[Served]:
        with self._lock:
            return [r for r in self.log if r.path == "/" + name]

    def bytes_served(self, name: str | None = None) -> int:
        with self._lock:
            return sum(r.bytes_sent for r in self.log if name is None or r.path == "/" + name)

    # -- serving --------------------------------------------------------------------------------
    def _size_and_reader(self, name: str):
        data = self.files[name]
        if isinstance(data, Path):
            return data.stat().st_size, lambda start: _file_chunks(data, start)
        return len(data), lambda start: (data[i : i + CHUNK] for i in range(start, len(data), CHUNK))

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        name = h.path.lstrip("/")
        rng = h.headers.get("Range")
        record = Served(path=h.path, range=rng, status=0)
        with self._lock:
            self.log.append(record)
            fail = self.fail_statuses.get(name)
            fail_status = fail.pop(0) if fail else None
            cuts = self.cut_after.get(name)
            cut = cuts.pop(0) if cuts and fail_status is None and name in self.files else None
        if name not in self.files:
            return self._reply_empty(h, record, 404)
        if fail_status is not None:
            return self._reply_empty(h, record, fail_status)
        size, chunks = self._size_and_reader(name)
        start = 0
        status = 200
        m = re.fullmatch(r"bytes=(\d+)-", rng or "")
        if m and not self.ignore_range:
            start = int(m.group(1))
            if start >= size:
                record.status = 416
                h.send_response(416)
                h.send_header("Content-Range", f"bytes */{size}")
                h.send_header("Content-Length", "0")
                h.end_headers()
                return
            status = 206
        record.status = status
        h.send_response(status)
        h.send_header("Content-Type", "application/octet-stream")
        h.send_header("Content-Length", str(size - start))
        h.send_header("Accept-Ranges", "bytes")
        if status == 206:
            h.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        if cut is not None:
            h.send_header("Connection", "close")
        h.end_headers()
        sent = 0
        try:
            for block in chunks(start):
                if cut is not None and sent + len(block) >= cut:
                    block = block[: cut - sent]
                    h.wfile.write(block)
                    sent += len(block)
                    break
                h.wfile.write(block)
                sent += len(block)
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            with self._lock:
                record.bytes_sent = sent
        if cut is not None:
            # Announced Content-Length but fewer bytes: the client sees an interrupted transfer.
            h.close_connection = True
            h.wfile.flush()
            try:
                h.connection.shutdown(2)
            except OSError:
                pass

    @staticmethod
    def _reply_empty(h, record: Served, status: int) -> None:
        record.status = status
        h.send_response(status)
        h.send_header("Content-Length", "0")
        h.end_headers()


def _file_chunks(path: Path, start: int):
    with open(path, "rb") as f:
        f.seek(start)
        for block in iter(lambda: f.read(CHUNK), b""):
            yield block


# -- tests of the server itself ---------------------------------------------------------------


def _get(server: RangeFileServer, name: str, headers: dict | None = None):
    port = server.httpd.server_address[1]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/" + name, headers=headers or {})
    resp = conn.getresponse()
    return conn, resp


def test_server_serves_ranges_and_counts_bytes():
    data = bytes(range(256)) * 40
    with RangeFileServer(files={"a.bin": data}) as server:
        conn, resp = _get(server, "a.bin", {"Range": "bytes=1000-"})
        body = resp.read()
        conn.close()
        assert resp.status == 206
        assert resp.getheader("Content-Range") == f"bytes 1000-{len(data) - 1}/{len(data)}"
        assert body == data[1000:]
        conn, resp = _get(server, "missing")
        resp.read()
        conn.close()
        assert resp.status == 404
    assert server.bytes_served("a.bin") == len(data) - 1000
    assert server.requests_for("a.bin")[0].range == "bytes=1000-"


def test_server_cut_after_gives_a_short_body():
    data = b"x" * 5000
    with RangeFileServer(files={"a.bin": data}, cut_after={"a.bin": [1234]}) as server:
        conn, resp = _get(server, "a.bin")
        try:
            resp.read()
            short = False
        except http.client.IncompleteRead as exc:
            short = len(exc.partial) == 1234
        conn.close()
    assert short
    assert server.bytes_served() == 1234
