"""Write .cog/openapi_schema.json from predict.py.

`cog build` writes this file into images. The local Cog server (coglet) validates inputs only
when it exists, so development and CI generate it here from the same Input declarations, with
cog's own inspector reading predict.py.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from comfy_runtime.settings import PROJECT_ROOT

SCHEMA_PATH = PROJECT_ROOT / ".cog" / "openapi_schema.json"


def _title(name: str) -> str:
    return name.replace("_", " ").title()


def input_schema(predictor_ref: str = "predict.py:Predictor", root: Path = PROJECT_ROOT) -> dict[str, Any]:
    from cog import _inspector
    from cog._adt import Repetition

    module_file, class_name = predictor_ref.split(":")
    # predict.py's Inputs carry the configured workflow's defaults, read when it is imported: import it afresh so
    # the schema is the one for the settings in force now (a test process writes it for several models).
    sys.modules.pop(Path(module_file).stem, None)
    sys.path.insert(0, str(root))
    try:
        info = _inspector.create_predictor(Path(module_file).stem, class_name)
    finally:
        sys.path.remove(str(root))
    properties: dict[str, Any] = {}
    required: list[str] = []
    for name, field in info.inputs.items():
        prop: dict[str, Any] = {"title": _title(name), "x-order": field.order, **field.type.json_type()}
        if field.description:
            prop["description"] = field.description
        if field.default is not None:
            prop["default"] = field.type.json_encode(field.default)
        elif field.type.repetition in (Repetition.REQUIRED, Repetition.REPEATED):
            required.append(name)
        if field.choices is not None:
            prop["enum"] = list(field.choices)
        for key, attr in (("minimum", "ge"), ("maximum", "le"), ("minLength", "min_length"),
                          ("maxLength", "max_length"), ("pattern", "regex")):
            if getattr(field, attr) is not None:
                prop[key] = getattr(field, attr)
        properties[name] = prop
    return {
        "Input": {"title": "Input", "type": "object", "properties": properties, "required": required},
        "Output": info.output.json_type(),
    }


def build_schema(predictor_ref: str = "predict.py:Predictor") -> dict[str, Any]:
    schemas = input_schema(predictor_ref)
    return {
        "openapi": "3.0.2",
        "info": {"title": "Cog", "version": "0.1.0"},
        "paths": {},
        "components": {"schemas": schemas},
    }


def write_schema(path: Path = SCHEMA_PATH, predictor_ref: str = "predict.py:Predictor") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(build_schema(predictor_ref), indent=2) + "\n")
    return path
