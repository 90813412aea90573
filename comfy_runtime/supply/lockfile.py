"""custom_nodes.lock: the pinned ComfyUI release and custom nodes."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from comfy_runtime.settings import PROJECT_ROOT
from comfy_runtime.supply.patches import PatchPin

LOCK_PATH = PROJECT_ROOT / "custom_nodes.lock"


@dataclass(frozen=True)
class OfflineSource:
    requirement: str
    sha256: str
    subdir: str
    exclude: tuple[str, ...] = ()
    commit_declared_in: str = ""  # file in the wheel that names the vendored commit; empty: not declared


@dataclass(frozen=True)
class ComfyUIPin:
    version: str
    repo: str
    tag: str
    commit: str
    offline_source: OfflineSource
    # Upstream fixes applied on top of the release ([[comfyui.patch]]: supply/patches.py), in order.
    patches: tuple[PatchPin, ...] = ()


@dataclass(frozen=True)
class NodePin:
    name: str
    repo: str
    commit: str
    requirements: tuple[str, ...] = ()


@dataclass(frozen=True)
class Lock:
    comfyui: ComfyUIPin
    nodes: tuple[NodePin, ...] = field(default_factory=tuple)


def load_lock(path: Path = LOCK_PATH) -> Lock:
    data = tomllib.loads(path.read_text())
    comfy = dict(data["comfyui"])
    offline = comfy.pop("offline_source")
    offline["exclude"] = tuple(offline.get("exclude", ()))
    patches = tuple(PatchPin(**patch) for patch in comfy.pop("patch", ()))
    nodes = tuple(
        NodePin(**{**node, "requirements": tuple(node.get("requirements", ()))}) for node in data.get("node", [])
    )
    return Lock(comfyui=ComfyUIPin(**comfy, offline_source=OfflineSource(**offline), patches=patches), nodes=nodes)
