"""Calling predict.py's Predictor in-process the way Cog does."""

from __future__ import annotations

from typing import Any


def booted_predictor(env: dict[str, str]) -> Any:
    """predict.py's Predictor set up under env (restored after setup), as Cog would boot it."""
    import pytest

    from predict import Predictor

    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        predictor = Predictor()
        predictor.setup()
    return predictor
