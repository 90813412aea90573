"""Rendered: what one run produced, before delivery."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Rendered:
    video: Path
    seed: int
    request: Any  # the ConcreteRequest it rendered (render/plan.py): every input concrete, the image as given
    run_dir: Path
    # Every file the run produced, as a record: all but `video` are deleted once it is written.
    produced_files: list[Path]
    timings: dict[str, float] = field(default_factory=dict)  # comfyui_seconds, encode_seconds, total_seconds
    # seed, steps, cache skips, the LoRA's fit and the stage timings, named for Cog's record_metric (render/metrics.py)
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def shown_inputs(self) -> dict[str, Any]:
        """The inputs as a record keeps them (JSON): a data URI start image replaced by its size."""
        return self.request.shown()
