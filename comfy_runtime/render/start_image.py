"""The start image of an image-to-video render, taken in as the hostile input it is (its fit to the size: plan.py).

Sources: a data URI, an https URL (fetched by supply/url_fetch.py: public addresses only, every redirect
re-checked, size and time capped), or a local Path from a Python caller. The bytes must be one still PNG, JPEG
or WebP image within MAX_IMAGE_BYTES and MAX_IMAGE_PIXELS (checked from the header, before any pixel is
decoded: no decompression bombs). EXIF orientation is applied and transparency is flattened onto white.
"""

from __future__ import annotations

import base64
import binascii
import io
import warnings
from pathlib import Path

from comfy_runtime.errors import InputRejected
from comfy_runtime.job.params import MAX_IMAGE_BYTES
from comfy_runtime.supply.url_fetch import FetchPolicy, fetch_url

MAX_IMAGE_PIXELS = 4096 * 4096
FORMATS = ("PNG", "JPEG", "WEBP")
BACKGROUND = (255, 255, 255)  # what transparent pixels become


class ImageRejected(InputRejected):
    """The start image cannot be used; the message says why and what to send instead."""


def image_bytes(ref: str | Path, work_dir: Path, policy: FetchPolicy) -> bytes:
    """The raw bytes of a data URI, URL or local file, capped at policy.max_bytes."""
    if isinstance(ref, Path):
        size = ref.stat().st_size if ref.is_file() else None
        if size is None:
            raise ImageRejected(f"image {ref} is not a file: give the path of a PNG, JPEG or WebP image")
        _check_size(size, policy.max_bytes)
        return ref.read_bytes()
    if ref[:5].lower() == "data:":
        return _data_uri_bytes(ref, policy.max_bytes)
    fetched = fetch_url(ref, work_dir / "start_image.download", policy)
    try:
        return fetched.path.read_bytes()
    finally:
        fetched.path.unlink(missing_ok=True)


def _data_uri_bytes(uri: str, max_bytes: int) -> bytes:
    header, comma, payload = uri.partition(",")
    if not comma or not header.lower().endswith(";base64"):
        raise ImageRejected("image: a data URI must be base64 encoded: data:image/png;base64,<data>")
    if len(payload) * 3 // 4 > max_bytes + 3:
        _check_size(len(payload) * 3 // 4, max_bytes)
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise ImageRejected("image: the data URI's base64 payload does not decode: encode the file with base64") from None
    _check_size(len(data), max_bytes)
    return data


def _check_size(size: int, max_bytes: int) -> None:
    if size > max_bytes:
        raise ImageRejected(f"image is {size:,} bytes; the limit is {max_bytes:,}: send a smaller (compressed) image")


def decode_image(data: bytes):
    """One still RGB image, upright, transparency flattened; ImageRejected for anything else."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=None)
    except UnidentifiedImageError:
        raise ImageRejected("image is not a PNG, JPEG or WebP image (its bytes are no image format): send one") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageRejected(f"image has too many pixels; the limit is {MAX_IMAGE_PIXELS:,}: send a smaller image") from None
    if image.format not in FORMATS:
        raise ImageRejected(f"image is {image.format}; only PNG, JPEG and WebP are taken: convert it")
    width, height = image.size
    if width * height > MAX_IMAGE_PIXELS:
        raise ImageRejected(
            f"image is {width}x{height} ({width * height:,} pixels); the limit is {MAX_IMAGE_PIXELS:,}: send a smaller image"
        )
    if getattr(image, "n_frames", 1) > 1:
        raise ImageRejected(f"image is an animated {image.format} ({image.n_frames} frames): send one still frame")
    try:
        image.load()
    except (OSError, SyntaxError) as error:  # Pillow reports a cut-off file as OSError ("image file is truncated")
        raise ImageRejected(f"image cannot be decoded ({error}): the file is damaged or cut off; send it again") from None
    image = ImageOps.exif_transpose(image)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, BACKGROUND)
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    return image.convert("RGB")


def default_policy() -> FetchPolicy:
    return FetchPolicy(MAX_IMAGE_BYTES)
