"""Find every file a run produced, from ComfyUI's per-node UI outputs."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def output_items(ui_outputs: dict[str, Any], folders: dict[str, Path]) -> Iterator[tuple[dict[str, Any], Path]]:
    """Each saved-file entry (images, gifs, videos ... whatever key a node used) with the absolute path it names.

    `folders` maps ComfyUI's folder type ("output", "temp") to where that type lives for this run. An entry
    whose name would lead out of its folder is skipped: a node (or a remote server) must not make us read or
    write elsewhere.
    """
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
                if base not in path.parents:
                    log.warning("skipping output %r: it would land outside %s", item, base)
                    continue
                yield item, path


def collect_output_files(ui_outputs: dict[str, Any], folders: dict[str, Path]) -> list[Path]:
    """Absolute paths of the saved files that exist, each once."""
    files: list[Path] = []
    for _item, path in output_items(ui_outputs, folders):
        if path.is_file() and path not in files:
            files.append(path)
    return files
