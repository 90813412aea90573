"""ComfyUI's validate_prompt calls a graph valid when one output is, and would run only that part."""

import copy

import pytest

from comfy_runtime.errors import WorkflowInvalidError
from comfy_runtime.graph.workflow import load_workflow


def graph_with_a_broken_second_output() -> dict:
    graph = copy.deepcopy(load_workflow("plumbing_video").render(
        {"prompt": "x", "width": 64, "height": 64, "num_frames": 5, "fps": 8, "seed": 1}, filename_prefix="partial"
    ))
    graph["90"] = {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}}
    graph["91"] = {"class_type": "SaveImage", "inputs": {"images": ["90", 0], "filename_prefix": "partial_image"}}
    graph["90"]["inputs"]["width"] = -64  # below EmptyImage's minimum: only output 91 is invalid
    return graph


def test_a_graph_valid_only_in_part_is_refused_by_validate_and_run(runtime, tmp_path):
    graph = graph_with_a_broken_second_output()
    with pytest.raises(WorkflowInvalidError, match="node 90 \\(EmptyImage\\)"):
        runtime.validate(graph)
    with pytest.raises(WorkflowInvalidError, match="node 90"):
        runtime.run(graph, tmp_path / "run")
    assert not any((tmp_path / "run").rglob("*.mp4")), "nothing of the valid part may have run"
