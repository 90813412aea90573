"""Replicate's release check: cog-safe-push.yaml has cog-safe-push's shape and its cases follow the input rules."""

from __future__ import annotations

import jsonschema
import yaml

from tests.support.paths import PROJECT_ROOT


def test_cog_safe_push_cases_follow_the_input_rules():
    """The config has cog-safe-push's shape (its pydantic Config, mirrored: extra fields are errors),
    every passing case is a valid request by the product's own rules and by the Cog input schema
    Replicate validates with, and every error case is really rejected on the field it names."""
    from pydantic import BaseModel, ConfigDict, ValidationError

    from comfy_runtime.cog_schema import build_schema
    from comfy_runtime.job.request import VideoRequest

    class Case(BaseModel):
        model_config = ConfigDict(extra="forbid")
        inputs: dict[str, bool | int | float | str]
        exact_string: str | None = None
        match_url: str | None = None
        match_prompt: str | None = None
        error_contains: str | None = None

    class Fuzz(BaseModel):
        model_config = ConfigDict(extra="forbid")
        fixed_inputs: dict[str, bool | int | float | str] = {}
        disabled_inputs: list[str] = []
        iterations: int = 10

    class Predict(BaseModel):
        model_config = ConfigDict(extra="forbid")
        compare_outputs: bool = True
        predict_timeout: int = 300
        test_cases: list[Case] = []
        fuzz: Fuzz | None = None

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")
        model: str
        test_model: str | None = None
        test_hardware: str = "cpu"
        predict: Predict | None = None
        parallel: int = 4

    config = Config(**yaml.safe_load((PROJECT_ROOT / "cog-safe-push.yaml").read_text()))
    assert config.predict is not None and config.predict.test_cases
    assert config.predict.predict_timeout >= 600, "a HunyuanVideo render takes minutes"

    input_schema = build_schema()["components"]["schemas"]["Input"]
    validator = jsonschema.Draft7Validator(input_schema)
    passing = [c for c in config.predict.test_cases if c.error_contains is None]
    failing = [c for c in config.predict.test_cases if c.error_contains is not None]
    assert passing and failing
    for case in passing:
        assert sum(x is not None for x in (case.exact_string, case.match_url, case.match_prompt)) <= 1, case
        assert not list(validator.iter_errors(case.inputs)), case.inputs
        VideoRequest(**case.inputs)
    for case in failing:
        schema_fields = {str(e.path[0]) if e.path else e.message for e in validator.iter_errors(case.inputs)}
        try:
            VideoRequest(**case.inputs)
            request_fields: set[str] = set()
        except ValidationError as error:
            request_fields = {str(e["loc"][0]) for e in error.errors()}
        rejected = schema_fields | request_fields
        assert any(case.error_contains in field for field in rejected), (case.inputs, rejected)
    fuzz = config.predict.fuzz
    if fuzz is not None:
        assert not list(validator.iter_errors({"prompt": "x", **fuzz.fixed_inputs}))
        assert set(fuzz.disabled_inputs) <= input_schema["properties"].keys()
