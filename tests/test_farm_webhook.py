"""The farm's webhook URL policy: a caller-chosen URL is hostile. No servers but two on 127.0.0.1 the test stops."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from comfy_runtime.farm.webhook import WebhookRefused, check_events, check_webhook_url, send


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:9/hook", "http://localhost/hook", "http://10.1.2.3/hook", "http://192.168.0.10/x",
    "http://172.16.5.4/x", "http://169.254.169.254/latest/meta-data", "http://[::1]/x", "http://[fe80::1]/x",
    "http://0.0.0.0/x", "http://100.64.0.1/x", "http://224.0.0.1/x",
])
def test_private_loopback_link_local_and_reserved_targets_are_refused(url):
    with pytest.raises(WebhookRefused, match="non-public address"):
        check_webhook_url(url)


@pytest.mark.parametrize("url, problem", [
    ("ftp://example.com/x", "not an http"), ("file:///etc/passwd", "not an http"), ("http:///nohost", "not an http"),
    ("https://user:pw@93.184.216.34/x", "credentials"), ("https://93.184.216.34/" + "a" * 3000, "longer than"),
])
def test_other_schemes_credentials_and_huge_urls_are_refused(url, problem):
    with pytest.raises(WebhookRefused, match=problem):
        check_webhook_url(url)


def test_public_addresses_pass_and_an_operator_can_allow_an_internal_host():
    assert check_webhook_url("https://93.184.216.34/hook?token=1") == "https://93.184.216.34/hook?token=1"
    assert check_webhook_url("http://127.0.0.1:8080/hook", allowed_hosts=["127.0.0.1"])
    with pytest.raises(WebhookRefused):
        check_webhook_url("http://127.0.0.2:8080/hook", allowed_hosts=["127.0.0.1"])


def test_events_filter_names_only_cog_events():
    assert check_events(None) == ["start", "output", "logs", "completed"]
    assert check_events(["completed"]) == ["completed"]
    with pytest.raises(WebhookRefused, match="webhook_events_filter"):
        check_events(["completed", "finished"])


class _Server:
    def __init__(self, status: int, location: str | None = None):
        self.hits: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                server.hits.append(self.path)
                self.send_response(status)
                if location:
                    self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


def test_a_redirect_is_not_followed_and_a_refused_url_is_never_called():
    target = _Server(200)
    redirector = _Server(307, location=f"{target.url}/internal")
    try:
        assert send(f"{redirector.url}/hook", {"id": "x"}, allowed_hosts=["127.0.0.1"]) is False
        assert redirector.hits == ["/hook"] and target.hits == []  # the redirect's target was never asked
        assert send(f"{target.url}/hook", {"id": "x"}) is False  # not allowed: refused before any request
        assert target.hits == []
        assert send(f"{target.url}/ok", {"id": "x"}, allowed_hosts=["127.0.0.1"]) is True
        assert target.hits == ["/ok"]
    finally:
        redirector.close()
        target.close()
