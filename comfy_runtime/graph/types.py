"""What a ComfyUI graph and its node schemas are, as the rest of the product sees them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Graph = dict[str, dict[str, Any]]


def is_link(value: Any) -> bool:
    """Whether a node input is fed by another node: API-format graphs write that as [node_id, output_index],
    and ComfyUI takes every list-valued input for one (a malformed one is a bad link, not a value)."""
    return isinstance(value, list)


@dataclass(frozen=True)
class InputSpec:
    """One node input as ComfyUI's /object_info describes it."""

    name: str
    type: str
    required: bool
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None


@dataclass(frozen=True)
class NodeSchema:
    class_type: str
    inputs: dict[str, InputSpec]
    outputs: tuple[str, ...]
