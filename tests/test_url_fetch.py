"""The hostile-URL fetcher against a real HTTP server on 127.0.0.1: what it refuses, it never requests."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from comfy_runtime.supply.url_fetch import FetchPolicy, URLRefused, fetch_url

BODY = b"\x89PNG" + bytes(range(256)) * 64


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        self.server.seen.append((self.path, self.headers.get("Host"), self.headers.get("Authorization")))
        if self.path.startswith("/redirect-to/"):
            self.send_response(302)
            self.send_header("Location", "http://" + self.path.removeprefix("/redirect-to/"))
            self.end_headers()
            return
        if self.path == "/missing":
            self.send_response(404)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.seen = []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _policy(**overrides):
    return FetchPolicy(**{"max_bytes": 1 << 20, "timeout": 10, **overrides})


def test_an_allowed_local_host_is_fetched_whole(server, tmp_path):
    url = f"http://127.0.0.1:{server.server_port}/image.png"
    fetched = fetch_url(url, tmp_path / "image.png", _policy(allow_http=True, allow_hosts=frozenset({"127.0.0.1"})))
    assert fetched.path.read_bytes() == BODY and fetched.size == len(BODY) and fetched.content_type == "image/png"
    assert server.seen == [("/image.png", f"127.0.0.1:{server.server_port}", None)]
    assert not list(tmp_path.glob("*.partial"))


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1:{port}/image.png", "loopback"),
        ("http://localhost:{port}/image.png", "loopback"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://10.0.0.7/image.png", "private"),
        ("http://[::1]:{port}/image.png", "loopback"),
    ],
)
def test_internal_addresses_are_refused_before_any_request(server, tmp_path, url, reason):
    with pytest.raises(URLRefused, match=reason):
        fetch_url(url.format(port=server.server_port), tmp_path / "x", _policy(allow_http=True))
    assert server.seen == [] and not (tmp_path / "x").exists()


def test_plain_http_is_refused_unless_allowed(server, tmp_path):
    with pytest.raises(URLRefused, match="only https URLs"):
        fetch_url(f"http://127.0.0.1:{server.server_port}/a", tmp_path / "x", _policy(allow_hosts=frozenset({"127.0.0.1"})))
    with pytest.raises(URLRefused, match="only https"):
        fetch_url("file:///etc/passwd", tmp_path / "x", _policy())
    assert server.seen == []


def test_a_redirect_to_a_refused_address_is_not_followed(server, tmp_path):
    """The first hop is an allowed host; it redirects to the cloud metadata address, which is never asked."""
    url = f"http://127.0.0.1:{server.server_port}/redirect-to/169.254.169.254/latest/meta-data/"
    policy = _policy(allow_http=True, allow_hosts=frozenset({"127.0.0.1"}))
    with pytest.raises(URLRefused, match="169.254.169.254.*link-local"):
        fetch_url(url, tmp_path / "x", policy, headers={"Authorization": "Bearer secret"})
    assert [path for path, _, _ in server.seen] == ["/redirect-to/169.254.169.254/latest/meta-data/"]


def test_a_redirect_drops_the_token(server, tmp_path):
    port = server.server_port
    url = f"http://127.0.0.1:{port}/redirect-to/127.0.0.1:{port}/image.png"
    policy = _policy(allow_http=True, allow_hosts=frozenset({"127.0.0.1"}))
    fetch_url(url, tmp_path / "x", policy, headers={"Authorization": "Bearer secret"})
    assert [auth for _, _, auth in server.seen] == ["Bearer secret", None]


def test_a_file_over_the_cap_is_refused_and_leaves_nothing(server, tmp_path):
    policy = _policy(max_bytes=len(BODY) - 1, allow_http=True, allow_hosts=frozenset({"127.0.0.1"}))
    with pytest.raises(URLRefused, match=f"{len(BODY)} bytes; the limit is {len(BODY) - 1}"):
        fetch_url(f"http://127.0.0.1:{server.server_port}/image.png", tmp_path / "x", policy)
    assert list(tmp_path.iterdir()) == []


def test_an_error_status_names_it(server, tmp_path):
    policy = _policy(allow_http=True, allow_hosts=frozenset({"127.0.0.1"}))
    with pytest.raises(URLRefused, match="HTTP 404"):
        fetch_url(f"http://127.0.0.1:{server.server_port}/missing", tmp_path / "x", policy)


def test_a_name_that_resolves_to_a_private_address_is_refused(tmp_path):
    """DNS is checked, not the name: a public-looking name that resolves inside is refused."""
    policy = _policy(resolver=lambda host, port: ["192.168.1.20"])
    with pytest.raises(URLRefused, match="resolves to 192.168.1.20, a private address"):
        fetch_url("https://images.example.com/a.png", tmp_path / "x", policy)
