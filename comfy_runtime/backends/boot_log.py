"""ComfyUI's boot messages, cut to what is true and useful for this product.

ComfyUI logs to the root logger while it imports and loads its nodes. Here some of that is noise or
wrong advice: without torchaudio (torch 2.14.1 has no torchaudio build) two audio modules fail with a
traceback each, "IMPORT FAILED", and "pip install -r requirements.txt" (which would not install it);
a CPU-only machine reads "Total VRAM <host RAM>". The filter drops exactly those records and counts
what it dropped, so the boot can say it once; every other failure (a custom node that breaks) keeps
its traceback.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager

_TORCHAUDIO = "No module named 'torchaudio'"
_CANNOT_IMPORT = re.compile(r"^Cannot import (?P<path>.+) module for custom nodes: (?P<error>.*)$", re.DOTALL)


class ComfyBootFilter(logging.Filter):
    def __init__(self, cpu_only: bool):
        super().__init__()
        self.cpu_only = cpu_only
        self.without_torchaudio: list[str] = []  # module files that did not import for want of torchaudio

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name != "root":  # ComfyUI logs through the root logger; ours do not
            return True
        message = record.getMessage()
        text = message.strip()
        if not text:
            return False  # ComfyUI's blank separator lines
        if self.cpu_only and text.startswith("Total VRAM "):
            return False  # on a CPU it is the host's RAM under the name VRAM; the host memory line says it right
        if text.startswith("Enabled pinned memory "):
            return False  # sized from the node's RAM; the host memory line gives ours and this figure
        if text.startswith("torchaudio missing,"):
            return False
        if text.startswith("Traceback") and text.endswith(_TORCHAUDIO):
            return False
        cannot = _CANNOT_IMPORT.match(text)
        if cannot and cannot.group("error").strip() == _TORCHAUDIO:
            self.without_torchaudio.append(cannot.group("path").rsplit("/", 1)[-1])
            return False
        advice = text.find(", if you have memory or speed issues try using: --")
        if advice > 0:  # advice to pass a ComfyUI command-line flag: there is no such command line here
            text = text[:advice]
        if text != message:
            record.msg, record.args = text, None
        return True

    def summary(self) -> str | None:
        if not self.without_torchaudio:
            return None
        return (f"ComfyUI's audio nodes are not loaded ({', '.join(self.without_torchaudio)}): torchaudio is not "
                "installed (there is no build for this torch). Harmless for video.")


@contextmanager
def filtered_comfy_boot(cpu_only: bool) -> Iterator[ComfyBootFilter]:
    boot_filter = ComfyBootFilter(cpu_only)
    root = logging.getLogger()
    root.addFilter(boot_filter)
    try:
        yield boot_filter
    finally:
        root.removeFilter(boot_filter)
