"""VideoRequest: one video job, validated by the rules of job/params.py.

The Cog server answers 422 from the schema the same rules produce (cog_inputs.py); VideoRequest enforces
them again for callers that skip Cog (the CLI, Python users, the farm's gateway and workers).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, create_model

from comfy_runtime.job.params import MAX_SEED, PARAMS, Choices, Grid, ImageRef, Param, Range, Reference, Text
from comfy_runtime.job.prompt import prompt_text_problem


class _Request(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    @property
    def given(self) -> frozenset[str]:
        """The inputs the caller set; every other one takes the rendering workflow's default."""
        return frozenset(self.model_fields_set)

    def with_defaults(self, defaults: dict[str, Any]) -> _Request:
        """This request with every input the caller did not set taken from `defaults` (a workflow's own
        reference values). The defaults were checked against the same rules when the workflow loaded."""
        unset = {name: value for name, value in defaults.items() if name not in self.given}
        return self.model_copy(update=unset) if unset else self

    def with_seed(self) -> _Request:
        """This request with a concrete seed: the given one, or a fresh random one."""
        if self.seed is not None:
            return self
        return self.model_copy(update={"seed": random.SystemRandom().randint(0, MAX_SEED)})


def _plain_text(param: Param, rule: Text):
    # Before pydantic's own str check, which would refuse undecodable text with a less helpful message.
    def check(value: object) -> object:
        if not isinstance(value, str) or (rule.allow_empty and value == ""):
            return value
        problem = prompt_text_problem(value)
        if problem:
            raise ValueError(param.name + problem.removeprefix("prompt"))
        return value

    return BeforeValidator(check)


def _reference_form(value: str) -> str:
    from comfy_runtime.lora.reference import lora_reference_problem

    problem = lora_reference_problem(value)
    if problem:
        raise ValueError(problem)
    return value


def _on_grid(param: Param, grid: Grid):
    def check(value: int) -> int:
        problem = grid.problem(param.name, value)
        if problem:
            raise ValueError(problem)
        return value

    return AfterValidator(check)


def _image_ref(param: Param, rule: ImageRef):
    def check(value: object) -> object:
        if isinstance(value, str):
            problem = rule.problem(param.name, value)
            if problem:
                raise ValueError(problem)
        return value

    return BeforeValidator(check)


def _field(param: Param) -> tuple[Any, Any]:
    rule = param.rule
    annotation: Any = param.kind
    constraints: dict[str, Any] = {}
    if isinstance(rule, Range):
        constraints = {"ge": param.kind(rule.ge), "le": param.kind(rule.le)}
    elif isinstance(rule, Grid):
        annotation = Annotated[param.kind, _on_grid(param, rule)]
    elif isinstance(rule, Choices):
        annotation = Literal[rule.values]
    elif isinstance(rule, Text):
        annotation = Annotated[param.kind, _plain_text(param, rule)]
        constraints = {"max_length": rule.max_length} if rule.allow_empty else {"min_length": 1}
    elif isinstance(rule, ImageRef):
        # A Path object comes only from Python callers (the CLI, a test): a local file they chose. A string, the
        # only thing JSON can carry, must be a data URI or a URL, never a path on this machine.
        annotation = Annotated[str | Path, _image_ref(param, rule)]
    elif isinstance(rule, Reference):
        annotation = Annotated[param.kind, AfterValidator(_reference_form)]
        constraints = {"max_length": rule.max_length}
    if param.optional:
        annotation = annotation | None
    return annotation, Field(... if param.required else param.default, description=param.description(), **constraints)


VideoRequest = create_model(
    "VideoRequest",
    __base__=_Request,
    __doc__="One video job, validated; off-grid sizes and frame counts are rejected, not rounded.",
    **{param.name: _field(param) for param in PARAMS},
)
