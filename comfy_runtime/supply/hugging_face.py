"""Where Hugging Face is (HF_ENDPOINT) and the token its downloads send (HF_TOKEN): for weights and LoRAs alike."""

from __future__ import annotations

import os

from comfy_runtime.supply.download import url_origin

HF_DEFAULT_ENDPOINT = "https://huggingface.co"


def hf_endpoint() -> str:
    # HF_ENDPOINT is Hugging Face's own variable (mirrors, tests): honour it like huggingface_hub does.
    return os.environ.get("HF_ENDPOINT", HF_DEFAULT_ENDPOINT).rstrip("/")


def hf_auth_headers(url: str) -> dict[str, str]:
    """The HF_TOKEN bearer header for a URL on the Hugging Face endpoint, and for no other host."""
    token = os.environ.get("HF_TOKEN", "")
    # Same origin, not a prefix: "https://huggingface.co.example.net/..." starts with the endpoint too.
    return {"Authorization": f"Bearer {token}"} if token and url_origin(url) == url_origin(hf_endpoint()) else {}
