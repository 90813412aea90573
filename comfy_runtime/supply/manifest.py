"""weights.manifest: every weight file, where it goes, where it comes from, and its pins."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from comfy_runtime.settings import PROJECT_ROOT

MANIFEST_PATH = PROJECT_ROOT / "weights.manifest"


@dataclass(frozen=True)
class WeightEntry:
    folder: str
    file: str
    size: int = 0
    sha256: str = ""
    url: str = ""
    hf_repo: str = ""
    hf_revision: str = ""
    hf_path: str = ""

    @property
    def relative_path(self) -> Path:
        return Path(self.folder) / self.file

    @property
    def pinned(self) -> bool:
        revision_ok = bool(self.url) or bool(self.hf_revision)
        return bool(self.sha256) and self.size > 0 and revision_ok


def load_manifest(path: Path = MANIFEST_PATH) -> list[WeightEntry]:
    entries = tomllib.loads(path.read_text()).get("weight", [])
    return [WeightEntry(**entry) for entry in entries]
