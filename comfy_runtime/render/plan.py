"""The plan of one run, made in one pass from a request and the served model, without side effects.

plan_run chooses the workflow (model_choice.py), makes the request concrete (every input the caller left out
takes the chosen workflow's default; a start image with no size given sets the size from its aspect), checks
the limits once (the model's own maxima, then the prompt and memory budget of job/limits.py) and builds the graph
the run executes: bindings filled in, then the deployment's DiT settings, the LoRA, the cache and the frame tap.
What it needs from outside (the seed, the decoded start image) is gathered before it runs; the LoRA file is
fetched after it, into the node it placed, so a refused request fetches nothing.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from comfy_runtime.graph.frame_tap import FrameTap, add_frame_tap
from comfy_runtime.graph.model_chain import add_cache, apply_dit_settings
from comfy_runtime.graph.types import Graph
from comfy_runtime.graph.workflow import Workflow
from comfy_runtime.job.params import BY_NAME, PARAMS, SIZE, graph_input_types
from comfy_runtime.job.params import defaults as input_defaults
from comfy_runtime.job.request import VideoRequest
from comfy_runtime.lora.graph import NOT_FETCHED, add_lora
from comfy_runtime.render.model_choice import ModelCannotUse, choose_workflow

if TYPE_CHECKING:
    from comfy_runtime.render.served_model import ServedModel

# The name the fitted start image goes to ComfyUI's input folder under (one prediction at a time: each
# overwrites the last). The bundled image-to-video graphs name it, so they validate at setup with a placeholder.
START_IMAGE_NAME = "hv_start_image.png"


class _Concrete:
    """Every input with its value, and `given`: the names the caller set (VideoRequest.given), kept as a fact."""

    given: frozenset[str]

    def values(self) -> dict[str, Any]:
        return {param.name: getattr(self, param.name) for param in PARAMS}

    def graph_values(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in graph_input_types()}

    def shown(self) -> dict[str, Any]:
        """The inputs as a record (JSON) keeps them: a data URI image is replaced by its size (it can be megabytes)."""
        return {**self.values(), "image": _shown_image(self.image)}


# One field per input of job/params.py, none left unset; built from PARAMS like VideoRequest itself.
ConcreteRequest = dataclasses.make_dataclass(
    "ConcreteRequest", [(param.name, param.kind) for param in PARAMS] + [("given", frozenset)], bases=(_Concrete,),
    frozen=True, namespace={"__module__": __name__},
)


@dataclass(frozen=True)
class RunInputs:
    """What the plan takes from outside: the seed and the start image (decoded, still unfitted). The LoRA is fetched
    after the plan (its node is placed, the file named then: lora/graph.py), so a refused request fetches nothing."""

    seed: int
    image: Any = None  # a PIL image (render/start_image.py decode_image)


@dataclass(frozen=True)
class RunPlan:
    request: Any  # ConcreteRequest
    workflow: Workflow
    graph: Graph  # what the runtime executes
    prefix: str  # the run's file names start with it
    tap: FrameTap | None
    start_image: Any = None  # the fitted image to upload as START_IMAGE_NAME, or None
    start_image_size: tuple[int, int] | None = None  # the image's own size, before the fit


def plan_run(model: ServedModel, request: VideoRequest, inputs: RunInputs, run_id: str) -> RunPlan:
    workflow = choose_workflow(model.workflow, request, model.stages)
    concrete = concrete_request(request, workflow, inputs)
    check_limits(model, workflow, concrete)
    prefix = f"{workflow.name}_{run_id[:12]}"
    values = concrete.graph_values()
    start_image = None
    if inputs.image is not None:
        start_image = fit_image(inputs.image, concrete.width, concrete.height)
        values["image"] = START_IMAGE_NAME
    graph = workflow.render(values, filename_prefix=prefix)
    graph = apply_dit_settings(graph, model.dit_weight_dtype, model.torch_compile)
    if concrete.lora_url:
        graph = add_lora(graph, NOT_FETCHED, concrete.lora_strength)
    graph = add_cache(graph, concrete.cache)
    graph, tap = add_frame_tap(graph, f"{prefix}_frame") if model.tap_frames else (graph, None)
    return RunPlan(concrete, workflow, graph, prefix, tap, start_image,
                   inputs.image.size if inputs.image is not None else None)


def concrete_request(request: VideoRequest, workflow: Workflow, inputs: RunInputs):
    """Every input: the caller's where given, else the workflow's default; the size from the start image's aspect
    where the caller gave an image and no size; the seed from `inputs`."""
    values = {param.name: getattr(request, param.name) for param in PARAMS}
    values.update({name: value for name, value in workflow.defaults.items() if name not in request.given})
    if inputs.image is not None and not {"width", "height"} & request.given:
        model_defaults = input_defaults(workflow.defaults)
        values["width"], values["height"] = size_for_aspect(inputs.image.size,
                                                            (model_defaults["width"], model_defaults["height"]))
    values["seed"] = inputs.seed
    return ConcreteRequest(**values, given=request.given)


def check_limits(model: ServedModel, workflow: Workflow, request) -> None:
    """Before ComfyUI runs, so a job that cannot fit fails in milliseconds: the model's own narrower maxima ([limits]
    in its bindings file, e.g. its trained clip length), then the prompt's tokens and the memory budget."""
    for name, high in workflow.limits.items():
        if name not in BY_NAME:  # max_pixel_frames: the memory budget's (job/limits.py)
            continue
        value = getattr(request, name)
        if value is not None and value > high:
            rule = BY_NAME[name].rule
            raise ModelCannotUse(
                f"{name}={value} is over what {workflow.title} takes ({name} at most {high:g}{_why(workflow, name)}; "
                f"the input allows {rule.text()}): lower {name} to {high:g} or less"
            )
    for name, low in workflow.minimums.items():
        value = getattr(request, name, None)
        if value is not None and value < low:
            raise ModelCannotUse(
                f"{name}={value} is under what {workflow.title} takes ({name} at least {low:g}{_why(workflow, name)}): "
                f"raise {name} to {low:g} or more"
            )
    stage_scale = max((t.scale for t in workflow.bindings.get("width", ())), default=1.0)
    trained_max = workflow.limits.get("max_pixel_frames")
    model.limits.check(request, stage_scale, int(trained_max) if trained_max else None, workflow.title)


def _why(workflow: Workflow, name: str) -> str:
    reason = workflow.limit_reasons.get(name)
    return f": {reason}" if reason else ""


def size_for_aspect(image_size: tuple[int, int], area_of: tuple[int, int]) -> tuple[int, int]:
    """A size on the 16-pixel grid with the image's aspect and about the pixel area of `area_of` (the model's
    default size), so a caller who gives no size gets the model's resolution in the image's shape."""
    image_w, image_h = image_size
    area = area_of[0] * area_of[1]
    scale = (area / (image_w * image_h)) ** 0.5
    width, height = (_on_grid(side * scale) for side in (image_w, image_h))
    while width * height > area and (width > SIZE.start or height > SIZE.start):
        if width >= height:
            width -= SIZE.step
        else:
            height -= SIZE.step
    return width, height


def _on_grid(value: float) -> int:
    return min(SIZE.stop, max(SIZE.start, round(value / SIZE.step) * SIZE.step))


def fit_image(image, width: int, height: int):
    """Scale to cover width x height and crop the centre: no stretching, no borders."""
    from PIL import Image, ImageOps

    return ImageOps.fit(image, (width, height), method=Image.Resampling.LANCZOS, centering=(0.5, 0.5))




def _shown_image(image: str | Path | None) -> str | None:
    if image is None:
        return None
    if isinstance(image, str) and image[:5].lower() == "data:":
        return f"{image.split(',', 1)[0]},... ({len(image):,} characters)"
    return str(image)
