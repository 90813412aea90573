"""Bundled workflows and their bindings: load, check against ComfyUI, fill in a request."""

from __future__ import annotations

import copy
import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from comfy_runtime.errors import HunyuanVideoError
from comfy_runtime.graph.types import Graph, NodeSchema, is_link
from comfy_runtime.settings import PROJECT_ROOT

WORKFLOWS_DIR = PROJECT_ROOT / "workflows"
# Python type of each value a binding can carry -> ComfyUI input types that accept it.
_ACCEPTS = {str: {"STRING", "COMBO"}, int: {"INT", "FLOAT"}, float: {"FLOAT"}}


@dataclass(frozen=True)
class Target:
    node: str
    input: str
    # A stage that works at another size than the one asked for (the 1080p super-resolution stage) takes the
    # value times `scale`, floored to a multiple of `grid`.
    scale: float = 1.0
    grid: int = 1

    def value(self, value: Any) -> Any:
        if self.scale == 1.0 or isinstance(value, bool) or not isinstance(value, int | float):
            return value
        return int(value * self.scale) // self.grid * self.grid


@dataclass(frozen=True)
class Workflow:
    name: str
    graph: Graph
    bindings: dict[str, tuple[Target, ...]]
    # The model family's own reference values for inputs the caller leaves unset (the bindings file's
    # [defaults] table), checked against the inputs' rules when the workflow loads.
    defaults: dict[str, Any] = field(default_factory=dict)
    # The model it renders, from the bindings file's [model] table. A workflow with one refuses every input it
    # has no binding for (the model cannot use it) unless the value is the default; one without (the demo) only
    # warns at setup.
    model: str = ""
    # Its sibling workflows of the same model: image-to-video, and the super-resolution chains by name ("1080p").
    image_to_video: Workflow | None = None
    upscale: dict[str, Workflow] = field(default_factory=dict)
    # Narrower maxima than the input rules, for this model (e.g. num_frames = 121, its trained length).
    limits: dict[str, float] = field(default_factory=dict)
    # Narrower minima ([minimums], e.g. steps = 8 for a step-distilled model) and why a limit is there
    # ([limit_reasons], shown in the refusal).
    minimums: dict[str, float] = field(default_factory=dict)
    limit_reasons: dict[str, str] = field(default_factory=dict)
    # UNETLoader node id -> the DiT input channels the graph needs there (33: HunyuanVideo v1 image-to-video).
    dit_in_channels: dict[str, int] = field(default_factory=dict)

    @property
    def title(self) -> str:
        return self.model or self.name

    @property
    def takes_image(self) -> bool:
        return "image" in self.bindings

    def family(self) -> list[Workflow]:
        """This workflow and every sibling, each once."""
        found: dict[str, Workflow] = {}
        pending = [self]
        while pending:
            workflow = pending.pop()
            if workflow.name in found:
                continue
            found[workflow.name] = workflow
            pending.extend([*([workflow.image_to_video] if workflow.image_to_video else []), *workflow.upscale.values()])
        return list(found.values())

    def render(self, values: dict[str, Any], filename_prefix: str) -> Graph:
        """A copy of the graph with the bound inputs set and every save node writing under filename_prefix.

        Bindings for values not given (None) keep the graph's value; values with no binding are ignored
        (a weight-free demo graph has no prompt).
        """
        graph = copy.deepcopy(self.graph)
        for name, value in values.items():
            if value is None:
                continue
            for target in self.bindings.get(name, ()):
                graph[target.node]["inputs"][target.input] = target.value(value)
        for node in graph.values():
            if "filename_prefix" in node["inputs"]:
                node["inputs"]["filename_prefix"] = filename_prefix
        return graph


class BindingError(HunyuanVideoError, ValueError):
    exit_status = 2  # a usage error of the workflow's author, as refused input is the caller's


def available_workflows(directory: Path = WORKFLOWS_DIR) -> list[str]:
    return sorted(p.stem for p in directory.glob("*.json"))


def load_workflow(name: str, directory: Path = WORKFLOWS_DIR, _loading: tuple[str, ...] = ()) -> Workflow:
    if name in _loading:
        raise BindingError(f"workflow {name!r}: its [model] table names itself through {' -> '.join(_loading)}")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name) or ".." in name:
        raise BindingError(f"workflow name {name!r} must be a plain name (letters, digits, _ . -), not a path")
    graph_path = directory / f"{name}.json"
    bindings_path = directory / f"{name}.bindings.toml"
    if not graph_path.is_file():
        raise BindingError(
            f"no workflow named {name!r} in {directory}; HV_WORKFLOW must be one of {available_workflows(directory)}"
        )
    if not bindings_path.is_file():
        raise BindingError(f"workflow {name!r} has no bindings file {bindings_path.name}")
    graph = json.loads(graph_path.read_text())
    declared = tomllib.loads(bindings_path.read_text())
    raw = declared.get("bindings", {})
    bindings = {
        input_name: tuple(
            Target(node=str(t["node"]), input=str(t["input"]), scale=float(t.get("scale", 1.0)), grid=int(t.get("grid", 1)))
            for t in targets
        )
        for input_name, targets in raw.items()
    }
    defaults = declared.get("defaults", {})
    _check_defaults(name, bindings_path, defaults)
    model = declared.get("model", {})
    loading = (*_loading, name)
    i2v = model.get("image_to_video")
    return Workflow(
        name=name, graph=graph, bindings=bindings, defaults=defaults, model=str(model.get("title", "")),
        image_to_video=load_workflow(i2v, directory, loading) if i2v else None,
        upscale={size: load_workflow(other, directory, loading) for size, other in model.get("upscale", {}).items()},
        limits={key: float(value) for key, value in declared.get("limits", {}).items()},
        minimums={key: float(value) for key, value in declared.get("minimums", {}).items()},
        limit_reasons={key: str(value) for key, value in declared.get("limit_reasons", {}).items()},
        dit_in_channels={str(node): int(channels) for node, channels in model.get("dit_in_channels", {}).items()},
    )


def _check_defaults(name: str, bindings_path: Path, defaults: dict[str, Any]) -> None:
    from pydantic import ValidationError

    from comfy_runtime.job.request import VideoRequest

    try:
        VideoRequest(**{"prompt": "a default check", **defaults})
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        raise BindingError(f"workflow {name!r}: [defaults] in {bindings_path.name} breaks the input rules: {problems}") from None


def check_bindings(
    workflow: Workflow,
    schemas: dict[str, NodeSchema],
    input_types: dict[str, type],
    input_ranges: dict[str, tuple[float, float]] | None = None,
) -> None:
    """Raise BindingError listing every binding that cannot work: unknown input, node, class or field,
    a field fed by a link, a type that does not fit, or a declared range the node cannot take."""
    problems: list[str] = []
    input_ranges = input_ranges or {}
    for input_name, targets in workflow.bindings.items():
        expected = input_types.get(input_name)
        if expected is None:
            problems.append(f"binding {input_name!r}: no predict() input has that name (known: {sorted(input_types)})")
            continue
        for target in targets:
            where = f"binding {input_name!r} -> node {target.node!r} input {target.input!r}"
            node = workflow.graph.get(target.node)
            if node is None:
                problems.append(f"{where}: workflow {workflow.name!r} has no node {target.node!r}")
                continue
            schema = schemas.get(node.get("class_type", ""))
            if schema is None:
                problems.append(f"{where}: ComfyUI has no node class {node.get('class_type')!r}")
                continue
            spec = schema.inputs.get(target.input)
            if spec is None:
                problems.append(
                    f"{where}: {schema.class_type} has no input {target.input!r} (it has {sorted(schema.inputs)})"
                )
                continue
            if is_link(node["inputs"].get(target.input)):
                problems.append(f"{where}: that input is fed by a link; bind a widget input instead")
            if spec.type not in _ACCEPTS.get(expected, set()):
                problems.append(f"{where}: {schema.class_type}.{target.input} takes {spec.type}, not {expected.__name__}")
            low_high = input_ranges.get(input_name)
            if low_high is not None:
                low, high = (target.value(bound) for bound in low_high)
                if spec.minimum is not None and low < spec.minimum or spec.maximum is not None and high > spec.maximum:
                    problems.append(
                        f"{where}: predict() allows {low}..{high} but {schema.class_type}.{target.input} "
                        f"takes {spec.minimum}..{spec.maximum}"
                    )
    if problems:
        raise BindingError(f"workflow {workflow.name!r} has bad bindings:\n  " + "\n  ".join(problems))
