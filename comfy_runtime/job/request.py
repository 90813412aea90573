"""VideoRequest: one video job, validated by the rules of job/params.py.

The Cog server answers 422 from the schema the same rules produce (cog_inputs.py); VideoRequest enforces
them again for callers that skip Cog (the CLI, Python users, the farm's gateway and workers).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, create_model

from comfy_runtime.errors import InputRejected
from comfy_runtime.job.params import BY_NAME, MAX_SEED, PARAMS, Param


class _Request(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    _given: frozenset[str] = PrivateAttr(default=frozenset())

    def __init__(self, **values: Any):
        super().__init__(**values)
        # What the caller set, recorded as they set it; copies with defaults filled in keep it.
        self._given = frozenset(values)

    @property
    def given(self) -> frozenset[str]:
        """The inputs the caller set; every other one takes the rendering workflow's default."""
        return self._given

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


def _field(param: Param) -> tuple[Any, Any]:
    annotation, constraints = param.rule.field(param)
    if param.optional:
        annotation = annotation | None
    return annotation, Field(... if param.required else param.default, description=param.description(), **constraints)


VideoRequest = create_model(
    "VideoRequest",
    __base__=_Request,
    __doc__="One video job, validated; off-grid sizes and frame counts are rejected, not rounded.",
    **{param.name: _field(param) for param in PARAMS},
)


class RequestRejected(InputRejected):
    """The inputs break a rule; `problems` has one line per input, each naming the input, the rule and the fix."""

    def __init__(self, problems: list[InputProblem]):
        self.problems = problems
        super().__init__("; ".join(problem.message for problem in problems))


@dataclass(frozen=True)
class InputProblem:
    name: str  # the input, or "" for the request as a whole
    message: str
    kind: str  # pydantic's error type (Cog's 422 `detail` shape has one)


_TYPE_WORDS = {int: "a whole number", float: "a number", str: "text"}


def _problem(error: dict[str, Any]) -> InputProblem:
    """One line for one of pydantic's errors: ours as we wrote it, pydantic's own in words naming the rule. Never
    the rejected value (a prompt is the caller's text, megabytes of an image URI) nor a link."""
    name = str(error["loc"][0]) if error.get("loc") else ""
    kind, message = error["type"], error["msg"]
    param = BY_NAME.get(name)
    if kind == "value_error":
        text = message.removeprefix("Value error, ")
    elif kind == "extra_forbidden":
        text = f"{name} is not an input: use {', '.join(BY_NAME)}"
    elif param is None:
        text = f"{name}: {message}" if name else message
    elif kind == "missing":
        text = f"{name} is required: {param.rule.text()}"
    else:  # a wrong type, a length, a choice: the rule says what is allowed
        shape = _TYPE_WORDS.get(param.kind, "a value")
        text = f"{name} must be {param.rule.text() if kind == 'literal_error' else shape + ' (' + param.rule.text() + ')'}"
    return InputProblem(name, text, kind)


def request_problems(error: ValidationError) -> list[InputProblem]:
    return [_problem(e) for e in error.errors(include_url=False, include_context=False, include_input=False)]


def parse_request(values: dict[str, Any]) -> VideoRequest:
    """A VideoRequest from a caller's values, or RequestRejected with one line per broken rule."""
    try:
        return VideoRequest(**values)
    except ValidationError as error:
        raise RequestRejected(request_problems(error)) from None
