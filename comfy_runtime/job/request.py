"""VideoRequest: one video job, validated by the rules of job/params.py.

The Cog server answers 422 from the schema the same rules produce (cog_inputs.py); VideoRequest enforces
them again for callers that skip Cog (the CLI, Python users, the farm's gateway and workers).
"""

from __future__ import annotations

import random
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, create_model

from comfy_runtime.job.params import MAX_SEED, PARAMS, Choices, Grid, Param, Range, Reference, Text
from comfy_runtime.job.prompt import prompt_text_problem


class _Request(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    def with_defaults(self, defaults: dict[str, Any]) -> _Request:
        """This request with every input the caller did not set taken from `defaults` (a workflow's own
        reference values). The defaults were checked against the same rules when the workflow loaded."""
        unset = {name: value for name, value in defaults.items() if name not in self.model_fields_set}
        return self.model_copy(update=unset) if unset else self

    def with_seed(self) -> _Request:
        """This request with a concrete seed: the given one, or a fresh random one."""
        if self.seed is not None:
            return self
        return self.model_copy(update={"seed": random.SystemRandom().randint(0, MAX_SEED)})


def _plain_text(value: object) -> object:
    # Before pydantic's own str check, which would refuse undecodable text with a less helpful message.
    problem = prompt_text_problem(value) if isinstance(value, str) else None
    if problem:
        raise ValueError(problem)
    return value


def _reference_form(value: str) -> str:
    from comfy_runtime.job.lora_ref import lora_reference_problem

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
        annotation = Annotated[param.kind, BeforeValidator(_plain_text)]
        constraints = {"min_length": 1}
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
