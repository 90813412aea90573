"""Turn ComfyUI's /object_info shape into NodeSchema; shared by both backends."""

from __future__ import annotations

from typing import Any

from comfy_runtime.graph.types import InputSpec, NodeSchema


def input_spec_from_object_info(name: str, spec: Any, required: bool) -> InputSpec:
    # /object_info writes a combo either as [choices, opts] (v1 nodes) or ["COMBO", {"options": ...}] (v3 nodes).
    kind = spec[0] if isinstance(spec, (list, tuple)) and spec else spec
    options = spec[1] if isinstance(spec, (list, tuple)) and len(spec) > 1 and isinstance(spec[1], dict) else {}
    if isinstance(kind, (list, tuple)):
        return InputSpec(name=name, type="COMBO", required=required, choices=tuple(kind))
    if kind == "COMBO":
        return InputSpec(name=name, type="COMBO", required=required, choices=tuple(options.get("options", ())))
    return InputSpec(
        name=name,
        type=str(kind),
        required=required,
        minimum=options.get("min"),
        maximum=options.get("max"),
    )


def node_schema_from_object_info(class_type: str, info: dict[str, Any]) -> NodeSchema:
    inputs: dict[str, InputSpec] = {}
    for section, required in (("required", True), ("optional", False)):
        for name, spec in (info.get("input", {}).get(section) or {}).items():
            inputs[name] = input_spec_from_object_info(name, spec, required)
    return NodeSchema(class_type=class_type, inputs=inputs, outputs=tuple(info.get("output", ())))
