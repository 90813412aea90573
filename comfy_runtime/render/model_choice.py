"""Which of a model's workflows renders a request, and the inputs that model cannot use.

A deployment serves one model (HV_WORKFLOW names its text-to-video workflow). Its bindings file's [model]
table names the siblings: the image-to-video workflow (chosen when `image` is given) and the super-resolution
chains (chosen by `upscale`). A stage is served only where the deployment enables it and has its weights.
Anything a model cannot do fails here, before a node runs, naming the model and the fix.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from comfy_runtime.errors import InputRejected
from comfy_runtime.graph.workflow import Workflow
from comfy_runtime.job.params import defaults as input_defaults
from comfy_runtime.job.params import graph_input_types
from comfy_runtime.job.request import VideoRequest


class ModelCannotUse(InputRejected):
    """The configured model (or this deployment of it) cannot do what the request asks."""


@dataclass
class Stages:
    """The workflows this deployment can run, and why the others are off (shown in the refusal)."""

    ready: dict[str, Workflow] = field(default_factory=dict)
    off: dict[str, str] = field(default_factory=dict)  # workflow name -> the reason, with its fix


def switched_off(base: Workflow, workflow: Workflow, image_to_video: bool, upscale: bool) -> str | None:
    """Why the deployment's settings leave one of the model's workflows out (and its weights unfetched), or None."""
    chains = {chain.name for member in base.family() for chain in member.upscale.values()}
    if workflow.name in chains and not upscale:
        return "HV_UPSCALE is off: set HV_UPSCALE=true to fetch and serve it"
    if workflow.takes_image and workflow.name != base.name and not image_to_video:
        return "HV_IMAGE_TO_VIDEO is off: set HV_IMAGE_TO_VIDEO=true to fetch and serve it"
    return None


def served_workflows(base: Workflow, image_to_video: bool, upscale: bool) -> list[Workflow]:
    """The model's workflows this deployment serves: what `weights fetch` and lazy mode fetch for."""
    return [w for w in base.family() if switched_off(base, w, image_to_video, upscale) is None]


def choose_workflow(base: Workflow, request: VideoRequest, stages: Stages) -> Workflow:
    workflow = base
    if base.takes_image and request.image is None:
        raise ModelCannotUse(
            f"workflow {base.name} ({base.title}) is image-to-video only: give image, or serve the model's "
            "text-to-video workflow (HV_WORKFLOW), which brings this one along"
        )
    if request.image is not None and not base.takes_image:
        if base.image_to_video is None:
            raise ModelCannotUse(
                f"{base.title} has no image-to-video workflow here: leave image empty for text-to-video, or serve a "
                "model that has one (docs/models.md)"
            )
        workflow = _ready(base.image_to_video, stages, "image-to-video", "leave image empty for text-to-video")
    if request.upscale != "none":
        chain = workflow.upscale.get(request.upscale)
        if chain is None:
            offered = ", ".join(["none", *workflow.upscale]) or "none"
            raise ModelCannotUse(f"{workflow.title} has no {request.upscale} stage: set upscale to one of {offered}")
        workflow = _ready(chain, stages, f"{request.upscale} upscale", "set upscale to none")
    refuse_unusable_inputs(workflow, request)
    return workflow


def _ready(workflow: Workflow, stages: Stages, what: str, instead: str) -> Workflow:
    if workflow.name in stages.ready:
        return stages.ready[workflow.name]
    reason = stages.off.get(workflow.name, "it was not started")
    raise ModelCannotUse(f"this deployment of {workflow.title} does not serve {what} ({reason}): {instead}")


def refuse_unusable_inputs(workflow: Workflow, request: VideoRequest) -> None:
    """An input the workflow has no binding for, set to anything but its default, is refused, not ignored."""
    if not workflow.model:  # the weight-free demo graph: its setup warns about what it ignores
        return
    effective = input_defaults(workflow.defaults)
    unusable = [
        name for name in graph_input_types()
        if name not in workflow.bindings and name in request.given
        and getattr(request, name) != effective.get(name) and name != "image"
    ]
    if unusable:
        given = ", ".join(f"{name}={getattr(request, name)!r}" for name in unusable)
        keep = ", ".join(f"{name}={effective.get(name)!r}" for name in unusable)
        raise ModelCannotUse(
            f"{workflow.title} cannot use {given} (workflow {workflow.name} has no place for it): leave it out or "
            f"at its default ({keep})"
        )
