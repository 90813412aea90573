"""A real HTTP file server on 127.0.0.1 with Range support, for the download and weights tests.

Serves files from a folder; counts the body bytes it sends; can slow each chunk down, or hold each response
once it has sent `hold_each_after` bytes of its body until the test sets `release` (so a test can kill a client
half-way, at a point that depends on neither timing nor how the connections share the bytes), and add headers
per path (Hugging Face's X-Linked-Etag, X-Repo-Commit).
"""

from __future__ import annotations

import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

CHUNK = 64 * 1024


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        # A client closing a kept-alive connection (the fetch's one-byte probe, a killed download) is normal here.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class RangeServer:
    def __init__(self, root: Path, port: int = 0, delay_per_chunk: float = 0.0, hold_each_after: int | None = None):
        self.root = Path(root)
        self.delay_per_chunk = delay_per_chunk
        self.hold_each_after = hold_each_after  # once a response sent this many body bytes, it waits for `release`
        self.release = threading.Event()
        self.extra_headers: dict[str, dict[str, str]] = {}
        self.aliases: dict[str, str] = {}  # url path -> file name under root
        self.redirects: dict[str, str] = {}  # url path -> absolute URL answered with 302
        self.authorizations: list[tuple[str, str | None]] = []  # (path, Authorization header) per request
        self.bytes_sent = 0
        self.requests: list[tuple[str, str, str | None]] = []  # (method, path, Range header)
        self._lock = threading.Lock()
        self._httpd = _QuietServer(("127.0.0.1", port), self._handler())
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread: threading.Thread | None = None

    def __enter__(self) -> RangeServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()  # held handlers end (their clients are gone or done)
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread:
            self._thread.join()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_HEAD(self) -> None:
                self._serve(body=False)

            def do_GET(self) -> None:
                self._serve(body=True)

            def _serve(self, body: bool) -> None:
                range_header = self.headers.get("Range")
                with server._lock:
                    server.requests.append((self.command, self.path, range_header))
                    server.authorizations.append((self.path, self.headers.get("Authorization")))
                if self.path in server.redirects:
                    self.send_response(302)
                    self.send_header("Location", server.redirects[self.path])
                    self.send_header("Content-Length", "0")
                    for key, value in server.extra_headers.get(self.path, {}).items():  # Hugging Face's LFS redirects carry them
                        self.send_header(key, value)
                    self.end_headers()
                    return
                name = server.aliases.get(self.path, self.path.lstrip("/"))
                path = server.root / name
                if not name or not path.is_file():
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                total = path.stat().st_size
                start, end = 0, total - 1
                match = re.fullmatch(r"bytes=(\d+)-(\d*)", range_header or "")
                if match:
                    start = int(match.group(1))
                    end = min(int(match.group(2)) if match.group(2) else total - 1, total - 1)
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{end}/{total}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(end - start + 1))
                self.send_header("Accept-Ranges", "bytes")
                for key, value in server.extra_headers.get(self.path, {}).items():
                    self.send_header(key, value)
                self.end_headers()
                if not body:
                    return
                try:
                    with path.open("rb") as handle:
                        handle.seek(start)
                        left = end - start + 1
                        sent_here = 0
                        while left > 0:
                            if server.hold_each_after is not None and sent_here >= server.hold_each_after:
                                server.release.wait()
                            size = min(CHUNK, left)
                            if server.hold_each_after is not None and sent_here < server.hold_each_after:
                                size = min(size, server.hold_each_after - sent_here)  # stop exactly at the hold
                            data = handle.read(size)
                            if not data:
                                break
                            self.wfile.write(data)
                            left -= len(data)
                            sent_here += len(data)
                            with server._lock:
                                server.bytes_sent += len(data)
                            if server.delay_per_chunk:
                                time.sleep(server.delay_per_chunk)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        return Handler
