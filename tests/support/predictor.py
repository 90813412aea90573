"""Calling predict.py's Predictor in-process the way Cog does."""

from __future__ import annotations

from typing import Any


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
