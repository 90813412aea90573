"""Where a request's LoRA comes from (comfy_runtime/lora/reference.py, cache.py, source.py), against a real HTTP
server on 127.0.0.1: the reference forms, refused files and addresses, the content-addressed cache, one download
for two requests (two processes too), hf:// with its token, the size bound (least recently used first), and a
remote backend's names. How it fits and changes a render: test_model_chain.py."""

from __future__ import annotations

import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from comfy_runtime.lora import cache as lora_cache
from comfy_runtime.lora.cache import LoraCache, LoraRejected, read_safetensors_header
from comfy_runtime.supply.url_fetch import FetchPolicy, URLRefused
from tests.support.tiny_lora import header_claiming, pickle_bytes, tiny_lora_bytes, torch_zip_bytes


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        server = self.server
        server.seen.append((self.path, self.headers.get("Authorization")))
        if self.path.startswith("/redirect-to/"):
            self.send_response(302)
            self.send_header("Location", "http://" + self.path.removeprefix("/redirect-to/"))
            self.end_headers()
            return
        body = server.files.get(self.path.split("?")[0])
        if body is None:
            self.send_response(404)
            self.end_headers()
            return
        server.request_arrived.set()
        server.release.wait(30)
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.seen, httpd.files = [], {}
    httpd.request_arrived, httpd.release = threading.Event(), threading.Event()
    httpd.release.set()
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.release.set()
    httpd.shutdown()
    httpd.server_close()


def _cache(tmp_path, max_bytes=1 << 20, cache_bytes=1 << 30, allow_local=True) -> LoraCache:
    hosts = frozenset({"127.0.0.1"}) if allow_local else frozenset()
    return LoraCache(tmp_path / "models", FetchPolicy(max_bytes, 10, allow_http=True, allow_hosts=hosts), cache_bytes)


def _url(server, path):
    return f"http://127.0.0.1:{server.server_port}{path}"


def _blobs(cache: LoraCache):
    return sorted((cache.root / "blobs").glob("*")) if (cache.root / "blobs").exists() else []


def test_a_lora_is_fetched_checked_and_kept_by_content(server, tmp_path):
    server.files["/style.safetensors"] = tiny_lora_bytes("comfyui")
    cache = _cache(tmp_path)
    resolved = cache.resolve(_url(server, "/style.safetensors"))
    assert resolved.fetched and resolved.path.read_bytes() == server.files["/style.safetensors"]
    assert resolved.name == f"hv-cache/blobs/{resolved.sha256}.safetensors"
    assert resolved.path == cache.loras_dir / resolved.name  # the name ComfyUI's loras folder lists
    assert len(resolved.keys) == 12 and all(k.startswith("diffusion_model.") for k in resolved.keys)
    assert not list((cache.root / "incoming").iterdir())


def test_a_cache_hit_fetches_nothing(server, tmp_path):
    server.files["/style.safetensors"] = tiny_lora_bytes("kohya")
    cache = _cache(tmp_path)
    first = cache.resolve(_url(server, "/style.safetensors"))
    second = _cache(tmp_path).resolve(_url(server, "/style.safetensors"))  # another process: the same volume
    assert (first.fetched, second.fetched) == (True, False) and first.path == second.path
    assert [path for path, _ in server.seen] == ["/style.safetensors"]


def test_two_requests_for_one_url_download_it_once(server, tmp_path):
    server.files["/style.safetensors"] = tiny_lora_bytes("comfyui")
    server.release.clear()  # hold the first download open while the second request comes in
    results, errors = [], []

    def resolve():
        try:
            results.append(_cache(tmp_path).resolve(_url(server, "/style.safetensors")))
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    first = threading.Thread(target=resolve)
    first.start()
    assert server.request_arrived.wait(10)
    second = threading.Thread(target=resolve)
    second.start()
    time.sleep(0.2)  # let the second reach the URL's lock while the first is still downloading (no assertion on time)
    server.release.set()
    first.join(30)
    second.join(30)
    assert errors == [] and len(results) == 2
    assert sorted(r.fetched for r in results) == [False, True] and results[0].path == results[1].path
    assert [path for path, _ in server.seen] == ["/style.safetensors"]


@pytest.mark.parametrize("make,reason", [
    (lambda tmp: pickle_bytes(), "is a pickle"),
    (lambda tmp: torch_zip_bytes(tmp / "zip.pt"), "is a pickle"),
    (lambda tmp: header_claiming(100 << 30), "has tensors up to byte 107374182400 but only 16 bytes of data"),
    (lambda tmp: b"\xff" * 8 + b"{}", "byte header; the limit is"),
    (lambda tmp: b"not a lora at all, just text", "byte header|not JSON"),
])
def test_files_that_are_not_safe_safetensors_are_refused_and_not_kept(server, tmp_path, make, reason):
    server.files["/style.safetensors"] = make(tmp_path)
    cache = _cache(tmp_path)
    with pytest.raises(LoraRejected, match=reason):
        cache.resolve(_url(server, "/style.safetensors"))
    assert _blobs(cache) == [] and not list((cache.root / "incoming").iterdir())
    assert not (cache.root / "urls").exists()


def test_a_pickle_under_models_loras_is_refused_too(tmp_path):
    cache = _cache(tmp_path)
    (cache.loras_dir).mkdir(parents=True)
    (cache.loras_dir / "renamed.safetensors").write_bytes(pickle_bytes())
    with pytest.raises(LoraRejected, match="pickle.*refused whatever their name"):
        cache.resolve("renamed.safetensors")


def test_a_file_over_the_cap_is_refused_and_nothing_is_kept(server, tmp_path):
    body = tiny_lora_bytes("comfyui")
    server.files["/big.safetensors"] = body
    cache = _cache(tmp_path, max_bytes=len(body) - 1)
    with pytest.raises(URLRefused, match=f"is {len(body)} bytes; the limit is {len(body) - 1}"):
        cache.resolve(_url(server, "/big.safetensors"))
    assert _blobs(cache) == [] and not list((cache.root / "incoming").iterdir())


@pytest.mark.parametrize("url,reason", [
    ("http://127.0.0.1:{port}/style.safetensors", "loopback"),
    ("http://169.254.169.254/latest/style.safetensors", "link-local"),
    ("http://127.0.0.1:{port}/redirect-to/10.0.0.7/style.safetensors", "10.0.0.7, a private address"),
])
def test_internal_addresses_are_refused_and_never_asked(server, tmp_path, url, reason):
    server.files["/style.safetensors"] = tiny_lora_bytes("comfyui")
    redirect = "redirect-to" in url
    cache = _cache(tmp_path, allow_local=redirect)  # the redirect's first hop is an allowed host
    with pytest.raises(URLRefused, match=reason):
        cache.resolve(url.format(port=server.server_port))
    assert [path for path, _ in server.seen] == ([url.split("{port}")[1]] if redirect else [])
    assert _blobs(cache) == []


def test_hf_references_resolve_on_the_hub_with_the_token_for_it_only(server, tmp_path, monkeypatch):
    server.files["/owner/loras/resolve/v1.2/styles/anime.safetensors"] = tiny_lora_bytes("diffusion_pipe")
    server.files["/plain.safetensors"] = tiny_lora_bytes("comfyui", seed=3)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_port}")
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    cache = _cache(tmp_path)
    resolved = cache.resolve("hf://owner/loras/styles/anime.safetensors@v1.2")
    assert resolved.fetched and resolved.keys[0].startswith("transformer.")
    assert server.seen == [("/owner/loras/resolve/v1.2/styles/anime.safetensors", "Bearer hf_secret")]
    monkeypatch.setenv("HF_ENDPOINT", "https://huggingface.co")
    cache.resolve(_url(server, "/plain.safetensors"))  # another origin: no token
    assert server.seen[-1] == ("/plain.safetensors", None)


def test_the_cache_keeps_its_size_bound_least_recently_used_first(server, tmp_path, monkeypatch):
    monkeypatch.setattr(lora_cache, "EVICTION_GRACE_SECONDS", 0.0)
    bodies = {f"/{n}.safetensors": tiny_lora_bytes("comfyui", seed=n) for n in range(3)}
    server.files.update(bodies)
    size = len(bodies["/0.safetensors"])
    cache = _cache(tmp_path, cache_bytes=2 * size)
    first = cache.resolve(_url(server, "/0.safetensors"))
    second = cache.resolve(_url(server, "/1.safetensors"))
    os.utime(first.path, (time.time() - 100, time.time() - 100))
    os.utime(second.path, (time.time() - 200, time.time() - 200))
    assert not cache.resolve(_url(server, "/0.safetensors")).fetched  # a hit: now the most recent
    third = cache.resolve(_url(server, "/2.safetensors"))
    assert _blobs(cache) == sorted([first.path, third.path])  # the least recently used (1) went
    again = cache.resolve(_url(server, "/1.safetensors"))
    assert again.fetched and again.path == second.path


def test_a_recently_used_lora_is_not_evicted_even_over_the_bound(server, tmp_path):
    bodies = {f"/{n}.safetensors": tiny_lora_bytes("comfyui", seed=n) for n in range(2)}
    server.files.update(bodies)
    cache = _cache(tmp_path, cache_bytes=len(bodies["/0.safetensors"]))
    first = cache.resolve(_url(server, "/0.safetensors"))
    second = cache.resolve(_url(server, "/1.safetensors"))
    # Over the bound, both stay: another pod may be loading the first one right now (within the grace period).
    assert _blobs(cache) == sorted([first.path, second.path])
    assert first.path.read_bytes() == bodies["/0.safetensors"]
    again = cache.resolve(_url(server, "/0.safetensors"))
    assert not again.fetched and again.path == first.path
    assert [path for path, _ in server.seen] == ["/0.safetensors", "/1.safetensors"]  # the hit asked nothing


@pytest.mark.parametrize("text,reason", [
    ("missing.safetensors", "no such file under"),
    ("../outside.safetensors", "plain relative path"),
    ("ftp://example.com/x.safetensors", "scheme 'ftp' is not fetched"),
    ("style.ckpt", "only .safetensors"),
])
def test_bad_references_are_refused_with_the_forms_allowed(tmp_path, text, reason):
    with pytest.raises(LoraRejected, match=reason):
        _cache(tmp_path).resolve(text)


def test_a_header_is_read_without_loading_the_tensors(tmp_path):
    path = tmp_path / "x.safetensors"
    path.write_bytes(tiny_lora_bytes("musubi"))
    header = read_safetensors_header(path, "x")
    assert "lora_unet_double_blocks_0_img_mlp_fc1.alpha" in header.keys and len(header.keys) == 18


def test_the_request_checks_the_form_and_the_defaults_leave_the_model_alone():
    from pydantic import ValidationError

    from comfy_runtime.job.request import VideoRequest

    request = VideoRequest(prompt="a fox")
    assert (request.lora_url, request.lora_strength, request.cache) == (None, 1.0, "off")
    assert VideoRequest(prompt="a fox", lora_url="hf://o/r/a.safetensors@abc").lora_url == "hf://o/r/a.safetensors@abc"
    with pytest.raises(ValidationError, match="scheme 'file' is not fetched; use an https:// URL"):
        VideoRequest(prompt="a fox", lora_url="file:///etc/passwd")
    with pytest.raises(ValidationError, match="cache"):
        VideoRequest(prompt="a fox", cache="0.7")


def test_a_remote_backend_takes_lora_names_but_refuses_urls():
    from comfy_runtime.backends.contract import RunEvents
    from comfy_runtime.job.request import VideoRequest
    from comfy_runtime.lora.source import LoraSource

    source = LoraSource(None)
    named = source.resolve(VideoRequest(prompt="a fox", lora_url="styles/anime.safetensors"), RunEvents())
    assert named.name == "styles/anime.safetensors"
    with pytest.raises(LoraRejected, match="a remote ComfyUI cannot load a LoRA fetched here"):
        source.resolve(VideoRequest(prompt="a fox", lora_url="https://example.com/a.safetensors"), RunEvents())
    assert source.resolve(VideoRequest(prompt="a fox"), RunEvents()) is None


def test_two_processes_sharing_the_volume_download_a_url_once(server, tmp_path):
    """As two pods on one volume: another process resolves the URL while this one's download is held open."""
    import subprocess
    import sys

    from tests.support.paths import PROJECT_ROOT

    server.files["/style.safetensors"] = tiny_lora_bytes("comfyui", seed=5)
    url = _url(server, "/style.safetensors")
    server.release.clear()
    results = []
    here = threading.Thread(target=lambda: results.append(_cache(tmp_path).resolve(url)))
    here.start()
    assert server.request_arrived.wait(10)
    script = (
        "import sys; from pathlib import Path; from comfy_runtime.lora.cache import LoraCache; "
        "from comfy_runtime.supply.url_fetch import FetchPolicy; "
        "policy = FetchPolicy(1 << 20, 10, allow_http=True, allow_hosts=frozenset({'127.0.0.1'})); "
        "cache = LoraCache(Path(sys.argv[1]), policy, 1 << 30); print('resolving', flush=True); "
        "r = cache.resolve(sys.argv[2]); print(r.fetched, r.path)"
    )
    other = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "models"), url], cwd=PROJECT_ROOT,
                             stdout=subprocess.PIPE, text=True)
    assert other.stdout.readline().strip() == "resolving"
    time.sleep(0.3)  # let it reach the URL's lock while this download is held open (no assertion on time)
    server.release.set()
    here.join(30)
    out, _ = other.communicate(timeout=60)
    assert other.returncode == 0
    assert results[0].fetched and out.split() == ["False", str(results[0].path)]
    assert [path for path, _ in server.seen] == ["/style.safetensors"]
