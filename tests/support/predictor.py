"""Calling predict.py's Predictor in-process the way Cog does."""

from __future__ import annotations

import inspect
from typing import Any


def call_predict(predictor: Any, **inputs: Any) -> Any:
    """predictor.predict(**inputs), every input not given taking its declared Input default, as Cog
    would fill it: a test keeps running when predict.py gains an input (a direct call would pass the
    Input declaration itself)."""
    for name, parameter in inspect.signature(predictor.predict).parameters.items():
        if name not in inputs and parameter.default is not inspect.Parameter.empty:
            inputs[name] = getattr(parameter.default, "default", parameter.default)
    return predictor.predict(**inputs)


def booted_predictor(env: dict[str, str]) -> Any:
    """predict.py's Predictor set up under env (restored after setup), as Cog would boot it."""
    import importlib
    import sys

    import pytest

    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        # Imported afresh under env, as Cog imports predict.py in the environment it then sets up in: its Inputs
        # (the schema's defaults) are those of the model env serves.
        sys.modules.pop("predict", None)
        predictor = importlib.import_module("predict").Predictor()
        predictor.setup()
    return predictor
