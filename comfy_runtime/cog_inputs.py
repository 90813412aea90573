"""predict()'s Cog Inputs, derived from job/params.py for the configured workflow.

Cog reads an input's name, type and constraints from predict()'s signature (inspect.getfullargspec,
which honours __signature__, and typing.get_type_hints). `with_cog_inputs` gives predict(self, **inputs)
that signature, so the schema a caller sees (and the 422s coglet answers) shows the configured
workflow's own defaults and the same rules VideoRequest enforces.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from cog import Input

from comfy_runtime.job.params import PARAMS, REQUIRED, Choices, Grid, ImageRef, Param, Range, Text, defaults
from comfy_runtime.settings import Settings


def cog_input(param: Param, default: Any) -> Any:
    rule = param.rule
    constraints: dict[str, Any] = {}
    if isinstance(rule, Range):
        constraints = {"ge": param.kind(rule.ge), "le": param.kind(rule.le)}
    elif isinstance(rule, Grid):
        constraints = {"choices": rule.choices}  # the 422 then lists the allowed values
    elif isinstance(rule, Choices):
        constraints = {"choices": list(rule.values)}
    elif isinstance(rule, Text | ImageRef):
        constraints = {"max_length": rule.max_length}
    return Input(default=None if default is REQUIRED else default, description=param.description(), **constraints)


def configured_defaults(settings: Settings | None = None) -> dict[str, Any]:
    """The defaults of the workflow this deployment serves (HV_WORKFLOW)."""
    from comfy_runtime.graph.workflow import load_workflow

    settings = settings or Settings()
    return defaults(load_workflow(settings.workflow, settings.workflows_dir).defaults)


def caller_inputs(inputs: dict[str, Any], schema_defaults: dict[str, Any]) -> dict[str, Any]:
    """The inputs the caller changed: coglet hands predict() every input, the schema's default filled in for
    those not sent. Left out, they take the rendering workflow's own default (an image switches to the
    image-to-video workflow, whose reference flow shift differs), and an input the model cannot use is refused
    only when it was really set."""
    return {name: value for name, value in inputs.items() if name not in schema_defaults or value != schema_defaults[name]}


def with_cog_inputs(input_defaults: dict[str, Any]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def declare(predict: Callable[..., Any]) -> Callable[..., Any]:
        self_param, *_ = inspect.signature(predict).parameters.values()
        params = [self_param]
        annotations: dict[str, Any] = {}
        for param in PARAMS:
            kind = param.kind | None if param.optional else param.kind
            default = REQUIRED if param.required else input_defaults[param.name]
            params.append(inspect.Parameter(
                param.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=cog_input(param, default), annotation=kind,
            ))
            annotations[param.name] = kind
        annotations["return"] = inspect.signature(predict).return_annotation
        predict.__signature__ = inspect.Signature(params, return_annotation=annotations["return"])
        predict.__annotations__ = annotations
        return predict

    return declare
