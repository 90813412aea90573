"""Hostile LoRA files and slow servers (issue 22 items 1-2), served by a real HTTP server on 127.0.0.1 to the real
fetcher and cache: each bad layout is refused before the file is named in the cache, a file ComfyUI cannot load
is evicted with its URL entry, and a server trickling bytes is cut off by the total deadline or the throughput
floor, whatever its per-read timeout."""

from __future__ import annotations

import json
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from comfy_runtime.errors import NodeExecutionError, NodeFailure
from comfy_runtime.job.request import VideoRequest
from comfy_runtime.lora.cache import LoraCache, LoraRejected
from comfy_runtime.lora.source import LoraSource
from comfy_runtime.supply.safetensors_layout import SafetensorsLayoutError, check_layout
from comfy_runtime.supply.url_fetch import FetchPolicy, URLRefused, fetch_url
from tests.support.tiny_lora import tiny_lora_bytes


def _safetensors(tensors: list[tuple[str, str, list[int], int, int]], data: bytes, raw_header: bytes | None = None) -> bytes:
    header = raw_header or json.dumps(
        {name: {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]} for name, dtype, shape, begin, end in tensors}
    ).encode()
    return struct.pack("<Q", len(header)) + header + data


BAD_FILES = {
    "overlap": (_safetensors([("a", "F32", [2], 0, 8), ("b", "F32", [2], 4, 12)], b"\0" * 12), "overlapping"),
    "gap": (_safetensors([("a", "F32", [1], 0, 4), ("b", "F32", [1], 8, 12)], b"\0" * 12), "leaves bytes 4-8 unused"),
    "trailing": (_safetensors([("a", "F32", [2], 0, 8)], b"\0" * 12), "4 trailing bytes"),
    "late_start": (_safetensors([("a", "F32", [1], 4, 8)], b"\0" * 8), "leaves bytes 0-4 unused"),
    "dtype_size": (_safetensors([("a", "F16", [4], 0, 4)], b"\0" * 4), r"F16 x \[4\] is 8 bytes"),
    "duplicate": (_safetensors([], b"\0" * 4, raw_header=b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},'
                                                         b'"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'),
                  "names tensor 'a' twice"),
    "huge_header": (struct.pack("<Q", 50 << 20) + b"{" + b" " * 1024, "header; the limit is 16777216"),
    "bad_metadata": (_safetensors([], b"\0" * 4, raw_header=b'{"__metadata__":{"k":1},'
                                                            b'"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'),
                     "__metadata__ that is not a table of strings"),
}


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server's name): a webhook receiver that trickles its answer
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.hits.append(self.path)
        self.wfile.write(b"HTTP/1.1 200 OK\r\n")
        for _ in range(60):
            if not self._trickle(b"X-Slow: a\r\n"):
                return

    def do_GET(self):  # noqa: N802 (http.server's name)
        self.server.hits.append(self.path)
        if self.path == "/slow-headers":
            self.wfile.write(b"HTTP/1.1 200 OK\r\n")
            for _ in range(60):
                if not self._trickle(b"X-Slow: a\r\n"):
                    return
        body = self.server.files.get(self.path)
        if self.path.startswith("/slow"):
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            for _ in range(100_000):
                if not self._trickle(b"x"):
                    return
            return
        if body is None:
            self.send_response(404)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _trickle(self, data: bytes) -> bool:
        try:
            self.wfile.write(data)
            self.wfile.flush()
        except OSError:
            return False
        return not self.server.stop.wait(self.server.byte_interval)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.files, httpd.hits, httpd.stop, httpd.byte_interval = {}, [], threading.Event(), 1.0
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.stop.set()
    httpd.shutdown()
    httpd.server_close()


def _policy(**kw) -> FetchPolicy:
    return FetchPolicy(1 << 20, **{"timeout": 5, "allow_http": True, "allow_hosts": frozenset({"127.0.0.1"}), **kw})


def _url(server, path):
    return f"http://127.0.0.1:{server.server_port}{path}"


@pytest.mark.parametrize("kind", sorted(BAD_FILES))
def test_a_lora_with_a_bad_layout_is_refused_before_it_is_cached(server, tmp_path, kind):
    body, reason = BAD_FILES[kind]
    server.files["/bad.safetensors"] = body
    cache = LoraCache(tmp_path / "models", _policy(), 1 << 30)
    with pytest.raises(LoraRejected, match=reason) as refused:
        cache.resolve(_url(server, "/bad.safetensors"))
    assert "\n" not in str(refused.value) and "/bad.safetensors" in str(refused.value)
    assert not list((cache.root / "blobs").glob("*")) if (cache.root / "blobs").exists() else True
    assert not (cache.root / "urls").exists() and not list((cache.root / "incoming").iterdir())
    with pytest.raises(LoraRejected):  # not served from a cache: fetched and checked again
        cache.resolve(_url(server, "/bad.safetensors"))
    assert server.hits.count("/bad.safetensors") == 2


# Duplicate names the loader takes (the last one wins): refused here because which tensor ComfyUI applies would
# depend on JSON parsing order.
@pytest.mark.parametrize("kind", sorted(set(BAD_FILES) - {"huge_header", "duplicate"}))
def test_every_file_the_checker_refuses_the_safetensors_loader_refuses_too(tmp_path, kind):
    """The check is no stricter than the format: what it refuses, safetensors' own loader cannot load either."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = tmp_path / "bad.safetensors"
    path.write_bytes(BAD_FILES[kind][0])
    with pytest.raises(SafetensorsLayoutError):
        check_layout(path, "x")
    with pytest.raises(SafetensorError):
        load_file(path)


def test_a_real_lora_passes_the_layout_check(tmp_path):
    path = tmp_path / "good.safetensors"
    path.write_bytes(tiny_lora_bytes("kohya"))
    from safetensors.torch import load_file

    assert sorted(check_layout(path, "x").keys) == sorted(load_file(path))


def test_a_cached_lora_comfyui_cannot_load_is_evicted_with_its_url_entry(server, tmp_path):
    server.files["/style.safetensors"] = tiny_lora_bytes("comfyui")
    url = _url(server, "/style.safetensors")
    source = LoraSource(LoraCache(tmp_path / "models", _policy(), 1 << 30))
    resolved = source.cache.resolve(url)
    assert resolved.path.is_file() and list((source.cache.root / "urls").glob("*.json"))
    failure = NodeFailure("3", "LoraLoaderModelOnly", "SafetensorError",
                          "Error while deserializing header: invalid JSON in header\nTraceback ...")
    refused = source.unloadable(VideoRequest(prompt="a fox", lora_url=url), resolved, NodeExecutionError(failure))
    assert isinstance(refused, LoraRejected)
    assert str(refused).count("\n") == 0 and url in str(refused) and "SafetensorError" in str(refused)
    assert not resolved.path.exists() and not list((source.cache.root / "urls").glob("*.json"))
    again = source.cache.resolve(url)
    assert again.fetched and server.hits.count("/style.safetensors") == 2
    other = NodeFailure("5", "KSampler", "RuntimeError", "shape mismatch")
    assert source.unloadable(VideoRequest(prompt="a fox", lora_url=url), again, NodeExecutionError(other)) is None
    assert again.path.is_file()


def test_a_cached_lora_damaged_on_disk_is_fetched_again(server, tmp_path):
    server.files["/style.safetensors"] = tiny_lora_bytes("comfyui")
    cache = LoraCache(tmp_path / "models", _policy(), 1 << 30)
    first = cache.resolve(_url(server, "/style.safetensors"))
    with first.path.open("ab") as blob:
        blob.write(b"junk")
    second = cache.resolve(_url(server, "/style.safetensors"))
    assert second.fetched and second.path.read_bytes() == server.files["/style.safetensors"]


def test_a_one_byte_per_second_body_is_cut_off_at_the_total_deadline(server, tmp_path):
    started = time.monotonic()
    with pytest.raises(URLRefused, match=r"3 s deadline \(HV_URL_FETCH_DEADLINE\)") as refused:
        fetch_url(_url(server, "/slow"), tmp_path / "x", _policy(deadline=3, min_bytes_per_second=0))
    took = time.monotonic() - started
    print(f"one byte per second, per-read timeout 5 s, deadline 3 s: refused after {took:.2f} s")
    assert took < 5 and "\n" not in str(refused.value)
    assert not list(tmp_path.iterdir())


def test_a_slow_body_is_cut_off_by_the_throughput_floor(server, tmp_path):
    server.byte_interval = 0.05  # 20 bytes/s: never a stall, far under the floor
    started = time.monotonic()
    with pytest.raises(URLRefused, match=r"under the floor of 1000 bytes/s \(HV_URL_MIN_BYTES_PER_SECOND\)"):
        fetch_url(_url(server, "/slow"), tmp_path / "x", _policy(min_bytes_per_second=1000, throughput_window=1))
    took = time.monotonic() - started
    print(f"20 bytes/s, floor 1000 bytes/s after 1 s: refused after {took:.2f} s")
    assert took < 3


def test_headers_trickled_byte_by_byte_are_cut_off_at_the_deadline(server, tmp_path):
    server.byte_interval = 0.5
    started = time.monotonic()
    with pytest.raises(URLRefused, match="deadline"):
        fetch_url(_url(server, "/slow-headers"), tmp_path / "x", _policy(deadline=2))
    assert time.monotonic() - started < 4


def test_the_settings_reach_the_policy(monkeypatch):
    from comfy_runtime.settings import Settings

    monkeypatch.setenv("HV_URL_FETCH_DEADLINE", "42")
    monkeypatch.setenv("HV_URL_MIN_BYTES_PER_SECOND", "7")
    policy = LoraCache.from_settings(Settings()).policy
    assert (policy.deadline, policy.min_bytes_per_second) == (42, 7)


def test_a_webhook_receiver_trickling_its_answer_is_given_up_on_at_the_timeout(server, caplog):
    from comfy_runtime.farm.webhook import send

    server.byte_interval = 0.5  # never a stall: a per-read timeout would wait for all 60 header lines (30 s)
    started = time.monotonic()
    assert send(_url(server, "/hook"), {"id": "x"}, allowed_hosts=["127.0.0.1"], timeout=2) is False
    took = time.monotonic() - started
    print(f"webhook receiver trickling headers, timeout 2 s: given up after {took:.2f} s")
    assert took < 4 and server.hits == ["/hook"]
    assert "no answer within 2 s" in caplog.text


def test_a_weights_download_under_the_throughput_floor_stops_with_the_reason(tmp_path):
    """Lazy weights (supply/download.py): a source that sends a chunk now and then never trips a per-read
    timeout; the floor over each window stops it, with the reason, and a later fetch at full speed completes."""
    import hashlib

    from comfy_runtime.supply.download import DownloadError, fetch
    from local_servers.range_server import RangeServer

    root = tmp_path / "src"
    root.mkdir()
    data = bytes(range(256)) * 4096  # 1 MiB: 16 chunks of 64 KiB
    (root / "model.safetensors").write_bytes(data)
    dest = tmp_path / "models" / "model.safetensors"
    with RangeServer(root, delay_per_chunk=0.5) as server:
        started = time.monotonic()
        with pytest.raises(DownloadError, match=r"under the floor of 1e\+07 bytes/s.*it resumes"):
            fetch(f"{server.url}/model.safetensors", dest, size=len(data), sha256=hashlib.sha256(data).hexdigest(),
                  connections=2, progress=False, use_pget=False, min_bytes_per_second=10_000_000, floor_window=1)
        took = time.monotonic() - started
        print(f"weights at ~256 KiB/s, floor 10 MB/s over 1 s windows: stopped after {took:.2f} s")
        assert took < 4 and not dest.exists()
        server.delay_per_chunk = 0
        got = fetch(f"{server.url}/model.safetensors", dest, size=len(data), sha256=hashlib.sha256(data).hexdigest(),
                    connections=2, progress=False, use_pget=False)
    assert got.size == len(data) and dest.read_bytes() == data
