"""Graphs derived from the bundled workflows, so a change to a product graph reaches every test built on it.

The plumbing workflow (EmptyImage -> ImageAddNoise -> CreateVideo -> SaveVideo, no weights) is the CPU
stand-in for a render; tests put fixture nodes (tests/fixture_custom_nodes: a slow stepping node, a failing
node, out-of-memory faults) into it with `splice`, the one place that knows where its frames flow.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
from pathlib import Path
from typing import Any

from comfy_runtime.graph.types import Graph
from comfy_runtime.graph.workflow import WORKFLOWS_DIR, Workflow, load_workflow

PLUMBING = "plumbing_video"
FRAMES_NODE, VIDEO_NODE = "2", "3"  # ImageAddNoise makes the frames, CreateVideo takes them
FIRST_SPLICED_ID = 9  # spliced nodes are 9, 10, ...: the ids the error messages in the tests name

_prefixes = itertools.count()


def plumbing_graph(width: int = 64, height: int = 64, frames: int = 9, fps: float = 12.0, seed: int = 0) -> Graph:
    """The plumbing workflow rendered with these values and a fresh filename prefix: ComfyUI's cache skips
    unchanged nodes, and a new prefix makes the save node run (and write its own file) every time."""
    return load_workflow(PLUMBING).render(
        {"width": width, "height": height, "num_frames": frames, "fps": fps, "seed": seed},
        filename_prefix=f"t{next(_prefixes)}",
    )


def splice(graph: Graph, *nodes: tuple[str, dict[str, Any]]) -> Graph:
    """A copy of a plumbing graph with `nodes` (class_type, inputs) chained between the frames and CreateVideo,
    each taking the previous one's IMAGE output as `image`; their ids are 9, 10, ... in order."""
    graph = copy.deepcopy(graph)
    upstream = [FRAMES_NODE, 0]
    for index, (class_type, inputs) in enumerate(nodes):
        node_id = str(FIRST_SPLICED_ID + index)
        assert node_id not in graph, f"node {node_id} is already in the graph"
        graph[node_id] = {"class_type": class_type, "inputs": {"image": upstream, **inputs}}
        upstream = [node_id, 0]
    graph[VIDEO_NODE]["inputs"]["images"] = upstream
    return graph


def plumbing_with(*nodes: tuple[str, dict[str, Any]]) -> Workflow:
    """The plumbing workflow, bindings and all, with `nodes` spliced in (see splice)."""
    base = load_workflow(PLUMBING)
    return Workflow(name="plumbing_spliced", graph=splice(base.graph, *nodes), bindings=base.bindings)


SLOW_WORKFLOW = "plumbing_slow"


def write_slow_workflow(folder: Path, seconds_per_step: float = 0.1) -> Path:
    """A workflows folder (for HV_WORKFLOWS_DIR) holding plumbing_slow: plumbing_video with the stepping,
    interruptible HVTestSlowSteps spliced in as node 9 and the request's `steps` bound to its step count, so
    a prediction lasts steps x seconds_per_step and reports each step, as a sampler does."""
    slow = splice(load_workflow(PLUMBING).graph, ("HVTestSlowSteps", {"steps": 1, "seconds_per_step": seconds_per_step}))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{SLOW_WORKFLOW}.json").write_text(json.dumps(slow))
    bindings = (WORKFLOWS_DIR / f"{PLUMBING}.bindings.toml").read_text()
    (folder / f"{SLOW_WORKFLOW}.bindings.toml").write_text(
        bindings + f'steps = [{{ node = "{FIRST_SPLICED_ID}", input = "steps" }}]\n'
    )
    return folder


def slow_steps_logged(logs: str) -> list[int]:
    """The steps HVTestSlowSteps reported, in order, from a prediction's logs ("HVTestSlowSteps step i/N")."""
    return [int(step) for step in re.findall(r"HVTestSlowSteps step (\d+)/\d+", logs)]
