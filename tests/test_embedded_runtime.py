"""The real ComfyUI 0.3.75, in this process, on the CPU."""

import copy
import threading

import pytest

from comfy_runtime.backends.contract import NodeStarted, StepProgress
from comfy_runtime.errors import ExecutionInterrupted, NodeExecutionError
from comfy_runtime.graph.workflow import load_workflow
from tests.helpers import probe_video


def plumbing(width=64, height=64, frames=9, fps=12.0, seed=0, prefix="t"):
    return load_workflow("plumbing_video").render(
        {"width": width, "height": height, "num_frames": frames, "fps": fps, "seed": seed}, filename_prefix=prefix
    )


def with_slow_node(graph, steps, seconds_per_step):
    graph = copy.deepcopy(graph)
    graph["9"] = {"class_type": "HVTestSlowSteps", "inputs": {"image": ["2", 0], "steps": steps, "seconds_per_step": seconds_per_step}}
    graph["3"]["inputs"]["images"] = ["9", 0]
    return graph


# Validation (the hunyuan graph, bad values, broken links) is in the contract suite, run on both backends.


def test_runs_a_video_graph_and_collects_the_video(runtime, tmp_path):
    events = []
    result = runtime.run(plumbing(width=96, height=80, frames=13, fps=8.0, prefix="a"), tmp_path / "run", events.append)
    assert len(result.files) == 1 and result.files[0].is_absolute()
    assert result.files[0].parent == (tmp_path / "run").resolve()
    video = probe_video(result.files[0])
    assert (video.frames, video.width, video.height, video.fps) == (13, 96, 80, 8.0)
    started = [e.class_type for e in events if isinstance(e, NodeStarted)]
    assert started == ["EmptyImage", "ImageAddNoise", "CreateVideo", "SaveVideo"]


def test_step_progress_is_reported_in_order(runtime, tmp_path):
    events = []
    runtime.run(with_slow_node(plumbing(prefix="p"), steps=5, seconds_per_step=0.0), tmp_path, events.append)
    steps = [(e.step, e.total, e.node_id, e.class_type) for e in events if isinstance(e, StepProgress)]
    assert steps == [(i, 5, "9", "HVTestSlowSteps") for i in range(1, 6)]


def test_a_failing_node_reports_id_class_and_message_and_the_runtime_recovers(runtime, tmp_path):
    graph = plumbing(prefix="f")
    graph["9"] = {"class_type": "HVTestFail", "inputs": {"image": ["2", 0], "message": "boom at frame 3"}}
    graph["3"]["inputs"]["images"] = ["9", 0]
    with pytest.raises(NodeExecutionError) as error:
        runtime.run(graph, tmp_path / "bad")
    assert error.value.failure.node_id == "9"
    assert error.value.failure.class_type == "HVTestFail"
    assert "boom at frame 3" in str(error.value)
    after = runtime.run(plumbing(prefix="f2"), tmp_path / "good")
    assert probe_video(after.files[0]).frames == 9


def test_interrupt_ends_the_run_and_the_next_one_succeeds(runtime, tmp_path):
    graph = with_slow_node(plumbing(prefix="i"), steps=400, seconds_per_step=0.05)  # ~20 s if not interrupted
    events = []
    timer = threading.Timer(0.5, runtime.interrupt)
    timer.start()
    with pytest.raises(ExecutionInterrupted):
        runtime.run(graph, tmp_path / "interrupted", events.append)
    assert not list((tmp_path / "interrupted").glob("*.mp4"))
    steps = [e.step for e in events if isinstance(e, StepProgress)]
    # Stopped inside the node, far from its last step (0.5 s into a ~20 s run), not after running it out.
    assert steps and max(steps) < 200, steps[-5:]
    after = runtime.run(plumbing(prefix="i2"), tmp_path / "after")
    assert probe_video(after.files[0]).frames == 9


def test_identical_graphs_each_produce_their_own_file(runtime, tmp_path):
    """ComfyUI's cache skips unchanged nodes; a save node must still run for every prediction."""
    first = runtime.run(plumbing(prefix="same1"), tmp_path / "one")
    second = runtime.run(plumbing(prefix="same2"), tmp_path / "two")
    assert first.files[0] != second.files[0] and second.files[0].is_file()
