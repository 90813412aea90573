"""predict()'s Cog Inputs, derived from job/params.py for the configured workflow.

Cog reads an input's name, type and constraints from predict()'s signature (inspect.getfullargspec,
which honours __signature__, and typing.get_type_hints). `with_cog_inputs` gives predict(self, **inputs)
that signature, so the schema a caller sees (and the 422s coglet answers) shows the configured
workflow's own defaults and the same rules VideoRequest enforces.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cog import Input

from comfy_runtime.job.params import PARAMS, REQUIRED, Param, defaults
from comfy_runtime.settings import Settings


@dataclass(frozen=True)
class PerWorkflow:
    """The default of an input whose reference value differs between the model's workflows (1.5 720p's flow
    shift: 9 for text-to-video, 7 for image-to-video). Cog shows it empty: a value coglet filled in could not
    be told from one the caller sent, and an image would then render with the text-to-video value."""

    values: tuple[tuple[str, Any], ...]  # (workflow name, default)

    def __str__(self) -> str:
        return ", ".join(f"{value} ({name})" for name, value in self.values)


@dataclass(frozen=True)
class ServedInputs:
    """The inputs as the model this deployment serves (HV_WORKFLOW) shows them: defaults and descriptions."""

    defaults: dict[str, Any]  # a PerWorkflow where the model's workflows differ
    descriptions: dict[str, str]


def cog_input(param: Param, default: Any, description: str | None = None) -> Any:
    constraints = param.rule.cog(param)
    description = description or param.description()
    if isinstance(default, PerWorkflow):
        description += f" Empty: the rendering workflow's reference value, {default}."
        default = None
    return Input(default=None if default is REQUIRED else default, description=description, **constraints)


def served_inputs(settings: Settings | None = None) -> ServedInputs:
    from comfy_runtime.graph.workflow import load_workflow

    settings = settings or Settings()
    base = load_workflow(settings.workflow, settings.workflows_dir)
    shown = defaults(base.defaults)
    family = [(workflow.name, defaults(workflow.defaults)) for workflow in base.family()]
    for name in shown:
        values = tuple((workflow, values[name]) for workflow, values in family)
        if len({value for _workflow, value in values}) > 1:
            shown[name] = PerWorkflow(values)
    feeds = {name: base.graph[targets[0].node]["class_type"] for name, targets in base.bindings.items() if targets}
    return ServedInputs(shown, {param.name: param.description(feeds.get(param.name)) for param in PARAMS})


def caller_inputs(inputs: dict[str, Any], schema_defaults: dict[str, Any]) -> dict[str, Any]:
    """The inputs the caller set: coglet hands predict() every input, with the schema's default for those not
    sent. An empty PerWorkflow input takes the rendering workflow's own value; the rest, equal to the default,
    are left to the workflow too (the same value), so an input a model cannot use is refused only when set."""
    given = {}
    for name, value in inputs.items():
        default = schema_defaults.get(name, REQUIRED)
        if value is None and isinstance(default, PerWorkflow) or name in schema_defaults and value == default:
            continue
        given[name] = value
    return given


def with_cog_inputs(served: ServedInputs) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def declare(predict: Callable[..., Any]) -> Callable[..., Any]:
        self_param, *_ = inspect.signature(predict).parameters.values()
        params = [self_param]
        annotations: dict[str, Any] = {}
        for param in PARAMS:
            default = REQUIRED if param.required else served.defaults[param.name]
            kind = param.kind | None if param.optional or isinstance(default, PerWorkflow) else param.kind
            params.append(inspect.Parameter(
                param.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=cog_input(param, default, served.descriptions[param.name]),
                annotation=kind,
            ))
            annotations[param.name] = kind
        annotations["return"] = inspect.signature(predict).return_annotation
        predict.__signature__ = inspect.Signature(params, return_annotation=annotations["return"])
        predict.__annotations__ = annotations
        return predict

    return declare
