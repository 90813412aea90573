"""Find every file a run produced, from ComfyUI's per-node UI outputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def collect_output_files(ui_outputs: dict[str, Any], folders: dict[str, Path]) -> list[Path]:
    """Absolute paths of the saved files, whatever output key a node used (images, gifs, videos ...).

    `folders` maps ComfyUI's folder type ("output", "temp") to where that type lives for this run.
    """
    files: list[Path] = []
    for node_output in ui_outputs.values():
        for items in node_output.values():
            if not isinstance(items, list):
                continue
            for item in items:
                if not isinstance(item, dict) or "filename" not in item:
                    continue
                base = folders.get(item.get("type", "output"))
                if base is None:
                    continue
                base = base.resolve()
                path = (base / item.get("subfolder", "") / item["filename"]).resolve()
                if base not in path.parents:  # a node's reported name must not lead out of its folder
                    continue
                if path.is_file() and path not in files:
                    files.append(path)
    return files
