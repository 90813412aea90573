"""The start image as hostile input: size and pixel caps, formats, damage, EXIF, alpha, and URLs.

Real files made with Pillow, a real HTTP server on 127.0.0.1 (local_servers/range_server.py) that records every
request, and the product's own fetcher (supply/url_fetch.py) with its default policy.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from comfy_runtime.job.params import MAX_IMAGE_URI_CHARS
from comfy_runtime.job.request import VideoRequest
from comfy_runtime.render.plan import fit_image
from comfy_runtime.render.start_image import MAX_IMAGE_PIXELS, ImageRejected, decode_image, image_bytes
from comfy_runtime.supply.url_fetch import FetchPolicy, URLRefused
from local_servers.range_server import RangeServer


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def data_uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode()


def gradient(width: int, height: int) -> Image.Image:
    x = np.linspace(0, 255, width, dtype=np.uint8)[None, :].repeat(height, 0)
    y = np.linspace(0, 255, height, dtype=np.uint8)[:, None].repeat(width, 1)
    return Image.fromarray(np.stack([x, y, np.full_like(x, 90)], axis=-1))


POLICY = FetchPolicy(max_bytes=200_000)


def test_png_jpeg_and_webp_decode_to_rgb(tmp_path):
    for fmt in ("PNG", "JPEG", "WEBP"):
        image = decode_image(image_bytes(data_uri(encoded(gradient(40, 30), fmt)), tmp_path, POLICY))
        assert (image.mode, image.size) == ("RGB", (40, 30)), fmt


def test_oversized_bytes_are_refused_before_decoding(tmp_path):
    big = encoded(Image.effect_noise((400, 400), 100).convert("RGB"), "PNG")
    assert len(big) > POLICY.max_bytes
    with pytest.raises(ImageRejected, match=r"bytes; the limit is 200,000"):
        image_bytes(data_uri(big), tmp_path, POLICY)
    path = tmp_path / "big.png"
    path.write_bytes(big)
    with pytest.raises(ImageRejected, match="the limit is 200,000"):
        image_bytes(path, tmp_path, POLICY)


def test_a_data_uri_over_the_input_limit_is_refused_by_the_request_rule():
    with pytest.raises(ValidationError, match="characters long; the limit is"):
        VideoRequest(prompt="x", image="data:image/png;base64," + "A" * MAX_IMAGE_URI_CHARS)


@pytest.mark.parametrize("value", ["/etc/passwd", "file:///etc/passwd", "ftp://example.com/a.png", "C:\\a.png"])
def test_a_string_that_is_not_a_data_uri_or_url_is_refused(value):
    with pytest.raises(ValidationError, match="must be a data URI or an https URL"):
        VideoRequest(prompt="x", image=value)


def test_too_many_pixels_is_refused_from_the_header_without_decoding(tmp_path):
    wide = encoded(Image.new("RGB", (5000, 4000), (10, 20, 30)), "PNG")  # 20 M pixels in ~60 KB
    assert len(wide) < POLICY.max_bytes
    with pytest.raises(ImageRejected, match=f"5000x4000 .*the limit is {MAX_IMAGE_PIXELS:,}"):
        decode_image(wide)


def test_a_decompression_bomb_is_refused(tmp_path):
    bomb = encoded(Image.new("1", (12000, 12000)), "PNG")  # 144 M pixels: over Pillow's own bomb threshold
    with pytest.raises(ImageRejected, match="too many pixels|the limit is"):
        decode_image(bomb)


def test_a_non_image_is_refused():
    with pytest.raises(ImageRejected, match="not a PNG, JPEG or WebP image"):
        decode_image(b"<html>not an image</html>")


def test_a_truncated_png_is_refused():
    whole = encoded(gradient(64, 64), "PNG")
    with pytest.raises(ImageRejected, match="damaged or cut off"):
        decode_image(whole[: len(whole) // 2])


def test_an_animated_gif_is_refused():
    frames = [Image.new("RGB", (16, 16), colour) for colour in ((255, 0, 0), (0, 255, 0))]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    with pytest.raises(ImageRejected, match="is GIF; only PNG, JPEG and WebP"):
        decode_image(buffer.getvalue())


def test_an_animated_webp_is_refused():
    frames = [Image.new("RGB", (16, 16), colour) for colour in ((255, 0, 0), (0, 255, 0))]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="WEBP", save_all=True, append_images=frames[1:])
    with pytest.raises(ImageRejected, match="animated WEBP .*2 frames"):
        decode_image(buffer.getvalue())


def test_exif_orientation_is_applied():
    """A camera JPEG stored landscape with Orientation 6 (rotate 90 degrees clockwise) is portrait upright."""
    stored = gradient(40, 20)
    exif = Image.Exif()
    exif[0x0112] = 6
    upright = decode_image(encoded(stored, "JPEG", exif=exif, quality=95))
    assert upright.size == (20, 40)
    # The stored top-left corner (dark) is the upright top-right corner after a clockwise turn.
    pixels = np.asarray(upright, dtype=np.int16)
    assert pixels[0, -1].sum() < pixels[-1, 0].sum()


def test_transparency_is_flattened_onto_white():
    rgba = Image.new("RGBA", (8, 8), (255, 0, 0, 255))
    rgba.putpixel((0, 0), (0, 0, 255, 0))
    flat = decode_image(encoded(rgba, "PNG"))
    assert flat.mode == "RGB" and flat.getpixel((0, 0)) == (255, 255, 255) and flat.getpixel((4, 4)) == (255, 0, 0)


def test_the_fit_covers_the_size_and_crops_the_centre():
    wide = Image.new("RGB", (200, 100), (0, 0, 0))
    wide.paste((255, 255, 255), (50, 0, 150, 100))  # a white centre square between black side bands
    fitted = fit_image(wide, 64, 64)
    assert fitted.size == (64, 64)
    assert np.asarray(fitted).min() > 240  # only the centre survives: no bands, no borders, no stretching


# -- URLs: only public addresses; the local server sees nothing from a refused one -------------------------------


@pytest.fixture
def served(tmp_path) -> tuple[RangeServer, bytes]:
    root = tmp_path / "served"
    root.mkdir()
    png = encoded(gradient(32, 32), "PNG")
    (root / "start.png").write_bytes(png)
    with RangeServer(root) as server:
        yield server, png


@pytest.mark.parametrize("host", ["127.0.0.1", "169.254.169.254", "10.0.0.7", "[::1]"])
def test_an_image_url_to_an_internal_address_is_refused_and_nothing_is_fetched(served, tmp_path, host):
    server, _ = served
    port = server.url.rsplit(":", 1)[1]
    policy = FetchPolicy(max_bytes=POLICY.max_bytes, allow_http=True)  # even with plain http allowed
    with pytest.raises(URLRefused, match="only public addresses are fetched"):
        image_bytes(f"http://{host}:{port}/start.png", tmp_path, policy)
    assert server.requests == []
    assert not list(tmp_path.glob("start_image*"))


def test_an_allowlisted_local_host_is_fetched(served, tmp_path):
    server, png = served
    policy = FetchPolicy(max_bytes=POLICY.max_bytes, allow_http=True, allow_hosts=frozenset({"127.0.0.1"}))
    assert image_bytes(f"{server.url}/start.png", tmp_path, policy) == png
    assert [method for method, _path, _range in server.requests] == ["GET"]
    assert not list(tmp_path.glob("start_image*"))  # the download is not left behind


def test_a_plain_http_image_url_is_refused_by_default(served, tmp_path):
    server, _ = served
    with pytest.raises(URLRefused, match="only https URLs are fetched"):
        image_bytes(f"{server.url}/start.png", tmp_path, POLICY)
    assert server.requests == []


PATH_INPUT_PREDICTOR = """
from cog import BasePredictor, Input, Path


class Predictor(BasePredictor):
    def predict(self, image: Path = Input(default=None)) -> str:
        return str(Path(image).stat().st_size)
"""


@pytest.mark.cog_server
def test_coglet_fetches_a_path_input_url_itself_with_no_address_check(served, tmp_path):
    """Why `image` is a string input, fetched by our own fetcher: given a URL for a cog.Path input, coglet 0.23.1
    downloads it before predict() runs, from loopback (docs/models.md has the rest of what it does)."""
    import os
    import subprocess
    import sys
    import time

    import httpx

    from local_servers.processes import free_port, stop_process_group

    server, png = served
    (tmp_path / "predict.py").write_text(PATH_INPUT_PREDICTOR)
    port = free_port()
    env = {**os.environ, "PORT": str(port), "COG_PREDICT_TYPE_STUB": "predict.py:Predictor",
           "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")}
    with (tmp_path / "cog.log").open("wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "cog.server.http", "--host", "127.0.0.1"], cwd=tmp_path,
                                   env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            for _ in range(300):
                try:
                    if client.get("/health-check").json()["status"] == "READY":
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
            answer = client.post("/predictions", json={"input": {"image": f"{server.url}/start.png"}}).json()
    finally:
        stop_process_group(process)
    assert answer["status"] == "succeeded" and answer["output"] == str(len(png)), answer
    assert [path for _m, path, _r in server.requests] == ["/start.png"]  # coglet fetched from 127.0.0.1


def test_a_local_path_from_a_python_caller_is_read(tmp_path):
    path = tmp_path / "start.png"
    path.write_bytes(encoded(gradient(20, 10), "PNG"))
    assert decode_image(image_bytes(Path(path), tmp_path, POLICY)).size == (20, 10)
    assert VideoRequest(prompt="x", image=path).image == path
