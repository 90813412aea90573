"""Calling predict.py's Predictor in-process the way Cog does."""

from __future__ import annotations

import inspect
from typing import Any


def call_predict(predictor: Any, **inputs: Any) -> Any:
    """predictor.predict(**inputs), every input not given taking its declared Input default, as Cog
    would fill it: a caller keeps running when predict.py gains an input (a direct call would pass the
    Input declaration itself)."""
    for name, parameter in inspect.signature(predictor.predict).parameters.items():
        if name not in inputs and parameter.default is not inspect.Parameter.empty:
            inputs[name] = getattr(parameter.default, "default", parameter.default)
    return predictor.predict(**inputs)
