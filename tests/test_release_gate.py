"""cog-safe-push's cases can pass as configured: its judge (match_prompt) takes images only, so a judged case must
ask for a format the judge can see and stay under its size limit; a video case carries no judge. The rules are
cog-safe-push's own (read in its source: ai.py create_content_list sends every file as an image block with the
media type mimetypes guesses from the URL's suffix, match_outputs.py download_many keeps that suffix) and
Anthropic's image input limits (jpeg, png, gif, webp; 5 MB)."""

from __future__ import annotations

import mimetypes

import yaml

from comfy_runtime.delivery.storage import CONTENT_TYPES
from tests.support.paths import PROJECT_ROOT

JUDGE_MEDIA_TYPES = {"image/jpeg", "image/png", "image/gif", "image/webp"}
JUDGE_MAX_BYTES = 5 * 1024 * 1024
# Worst case for an 8-bit palette GIF: LZW on incompressible indices grows them by up to ~1/3, and the judge's
# request carries the file base64-encoded (another 4/3).
GIF_WORST_BYTES_PER_PIXEL = 4 / 3 * 4 / 3


def _cases() -> list[dict]:
    return yaml.safe_load((PROJECT_ROOT / "cog-safe-push.yaml").read_text())["predict"]["test_cases"]


def test_every_judged_case_asks_for_a_format_the_judge_can_see():
    judged = [case for case in _cases() if "match_prompt" in case]
    assert judged, "no case is judged against its prompt"
    for case in judged:
        output_format = case["inputs"].get("output_format", "mp4")
        media_type = mimetypes.guess_type(f"out.{output_format}")[0]
        assert media_type == CONTENT_TYPES[f".{output_format}"]  # what the delivered URL's suffix tells the judge
        assert media_type in JUDGE_MEDIA_TYPES, f"the judge cannot look at {media_type}: {case['inputs']}"


def test_a_judged_gif_stays_under_the_judges_size_limit_in_the_worst_case():
    for case in (c for c in _cases() if "match_prompt" in c):
        inputs = case["inputs"]
        pixels = inputs["width"] * inputs["height"] * inputs["num_frames"]
        assert pixels * GIF_WORST_BYTES_PER_PIXEL < JUDGE_MAX_BYTES, inputs


def test_mp4_and_webm_are_still_rendered_by_the_gate():
    formats = {case["inputs"].get("output_format", "mp4") for case in _cases() if "error_contains" not in case}
    assert {"mp4", "webm", "gif"} <= formats
