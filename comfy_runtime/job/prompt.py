"""Rules for the prompt text: what the text encoders can read, checked before anything runs.

HunyuanVideo reads the prompt through a LLaVA-Llama3 encoder inside a fixed chat template
(comfy/text_encoders/hunyuan_video.py). ComfyUI does not cut the prompt, but the model was trained
on at most 256 prompt tokens (the reference code's text_len), so a longer prompt is refused with
its token count rather than silently truncated or fed beyond what the model knows.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from pathlib import Path

from comfy_runtime.errors import InputRejected

# A cheap guard that the HTTP edge enforces before any tokenizer runs (a 1 MB prompt never gets in).
MAX_PROMPT_CHARS = 4000
# HunyuanVideo's prompt length in LLaMA tokens (the reference code's text_len).
MAX_PROMPT_TOKENS = 256
# Tab, newline and carriage return are ordinary text; every other control character is refused.
_ALLOWED_CONTROLS = {"\t", "\n", "\r"}
# The same rule as a JSON-schema pattern (cog.Input's regex, checked by coglet before predict runs): one character
# that is not a space, and no control character (Unicode Cc) but tab, newline and carriage return. No look-arounds:
# coglet's regex engine may lack them.
_PLAIN = r"[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]"
PLAIN_TEXT_PATTERN = rf"^{_PLAIN}*[^\s\x00-\x1f\x7f-\x9f]{_PLAIN}*$"
# Special-token markup of the LLaMA and CLIP vocabularies: in a prompt it would close the encoder's
# chat template early ("<|eot_id|>") or start a fake turn.
_SPECIAL_TOKEN = re.compile(r"<\|[A-Za-z0-9_]+\|>")
TOKENIZER_RELATIVE_PATH = Path("comfy/text_encoders/llama_tokenizer/tokenizer.json")


class PromptTooLong(InputRejected):
    pass


def prompt_text_problem(text: str) -> str | None:
    """Why this prompt cannot be used, or None. Each message names the problem and the fix."""
    if not text.strip():
        return "prompt is empty: describe what the video shows"
    if len(text) > MAX_PROMPT_CHARS:
        return f"prompt is {len(text)} characters long; the limit is {MAX_PROMPT_CHARS}: shorten it"
    for index, char in enumerate(text):
        category = unicodedata.category(char)
        if category == "Cs":
            # Python keeps undecodable bytes (CLI arguments, lone JSON surrogate escapes) as lone surrogates.
            return (
                f"prompt is not valid UTF-8 (an undecodable byte or lone surrogate U+{ord(char):04X} at character "
                f"{index}): send the text UTF-8 encoded"
            )
        if category == "Cc" and char not in _ALLOWED_CONTROLS:
            return (
                f"prompt contains the control character U+{ord(char):04X} at character {index}: remove it "
                "(tabs and line breaks are fine)"
            )
    marker = _SPECIAL_TOKEN.search(text)
    if marker:
        return (
            f"prompt contains the tokenizer marker {marker.group(0)!r} at character {marker.start()}: remove it "
            "(it would break out of the text encoder's template)"
        )
    return None


@lru_cache(maxsize=4)
def _tokenizer(path: Path):
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(path))


class PromptTokenCounter:
    """Counts a prompt's LLaMA tokens with the tokenizer file that ships inside the pinned ComfyUI."""

    def __init__(self, comfyui_path: Path, limit: int = MAX_PROMPT_TOKENS):
        self.path = Path(comfyui_path) / TOKENIZER_RELATIVE_PATH
        self.limit = limit
        if not self.path.is_file():
            raise FileNotFoundError(
                f"no LLaMA tokenizer at {self.path}: HV_COMFYUI_PATH must point at a ComfyUI checkout "
                "(0.3.75 or later), which ships it"
            )
        _tokenizer(self.path)  # load it now, at setup, not in the first prediction (docs/benchmarks.md)

    def count(self, text: str) -> int:
        return len(_tokenizer(self.path).encode(text, add_special_tokens=False).ids)

    def check(self, text: str) -> int:
        """The token count; raise PromptTooLong (with how much to cut) when it is over the limit."""
        tokens = self.count(text)
        if tokens > self.limit:
            keep = round(len(text) * self.limit / tokens)
            raise PromptTooLong(
                f"prompt is {tokens} tokens long; HunyuanVideo reads at most {self.limit}: shorten it "
                f"(about the first {keep} characters fit)"
            )
        return tokens
