"""Faults injected into real predictions (real ComfyUI in-process, plumbing graph on the CPU):
out of memory in the sampler and in the decode, a run past its time limit, Cog's cancel, a failing
node. Each must fail clearly, leave no folder behind, free what it held, and the next one succeeds."""

import ctypes
import gc
import re
import sys
import threading
import time

import psutil
import pytest
from cog import CancelationException

from comfy_runtime.errors import ComfyRuntimeError, ExecutionInterrupted, NodeExecutionError, RunTimedOut
from comfy_runtime.graph.workflow import load_workflow
from comfy_runtime.job.limits import JobLimits, RenderOutOfMemory
from comfy_runtime.job.request import VideoRequest
from comfy_runtime.render.served_model import ServedModel
from comfy_runtime.service import VideoService
from comfy_runtime.settings import Settings
from local_servers.in_process import call_predict
from tests.support.graphs import plumbing_with
from tests.support.media import probe_video

QUIET = lambda _line: None  # noqa: E731
REQUEST = VideoRequest(prompt="x", width=96, height=64, num_frames=13, fps=12, seed=3)


def faults_module():
    return next(module for name, module in sys.modules.items() if name.endswith("hv_test_nodes.faults"))


def renderer_for(runtime, root, workflow=None, **limits) -> VideoService:
    return VideoService(ServedModel(runtime, workflow or load_workflow("plumbing_video"), root, JobLimits(JobLimits.default().budget, **limits)))


def folders(root):
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def step_reached(text: str, total: int) -> int:
    """The last `step i/total` a message or log names."""
    steps = [int(step) for step in re.findall(rf"step (\d+)/{total}\b", text)]
    assert steps, text
    return steps[-1]


def assert_next_prediction_succeeds(runtime, root):
    rendered = renderer_for(runtime, root).render(REQUEST, QUIET)
    video = probe_video(rendered.video)
    assert (video.frames, video.width, video.height) == (13, 96, 64)


# -- out of memory -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault,advice",
    [("HVTestOutOfMemory", "Lower the size (for example 176x80), or num_frames (for example 5)"),
     ("HVTestOutOfMemoryDecode", "Lower the decode tile size (tile_size / temporal_size of node 10 in the workflow), or")],
)
def test_out_of_memory_frees_models_and_caches_says_what_to_lower_and_the_next_prediction_succeeds(
    runtime, tmp_path, fault, advice
):
    import comfy.model_management

    faults = faults_module()
    root = tmp_path / "outputs"
    workflow = plumbing_with(("HVTestTrackedImage", {}), (fault, {"megabytes": 16}))
    with pytest.raises(RenderOutOfMemory) as error:
        renderer_for(runtime, root, workflow).render(REQUEST.model_copy(update={"width": 256, "height": 128}), QUIET)
    message = str(error.value)
    assert f"node 10 ({fault})" in message and "256x128, 13 frames" in message
    assert "CUDA out of memory" in message and "next prediction can run" in message
    assert advice in message and "num_frames (for example 5)" in message
    assert isinstance(error.value.__cause__, NodeExecutionError)

    assert faults.LOADED_BEFORE_OOM[-1] >= 1, "the fault node loads a model before it fails"
    assert comfy.model_management.current_loaded_models == [], "loaded models must be unloaded"
    gc.collect()
    assert faults.TRACKED[-1]() is None, "ComfyUI's output cache must not keep the failed run's tensors"
    assert folders(root) == [], "the failed run's folder must be removed"
    assert_next_prediction_succeeds(runtime, root)


def test_a_successful_run_keeps_its_cached_outputs(runtime, tmp_path):
    """The control for the test above: without an OOM the cache does hold the tracked tensor."""
    faults = faults_module()
    renderer_for(runtime, tmp_path, plumbing_with(("HVTestTrackedImage", {}))).render(REQUEST, QUIET)
    gc.collect()
    assert faults.TRACKED[-1]() is not None


# -- the time limit ----------------------------------------------------------------------------


def test_a_prediction_past_its_time_limit_is_interrupted_and_fails_clearly(runtime, tmp_path):
    root = tmp_path / "outputs"
    slow = plumbing_with(("HVTestSlowSteps", {"steps": 400, "seconds_per_step": 0.05}))  # ~20 s uninterrupted
    with pytest.raises(RunTimedOut) as error:  # 2 s: node 9 is reached even on a busy machine
        renderer_for(runtime, root, slow, timeout=2.0).render(REQUEST, QUIET)
    message = str(error.value)
    assert "time limit of 2 s (HV_PREDICT_TIMEOUT) in node 9 (HVTestSlowSteps) at step" in message
    assert "interrupted; nothing was saved" in message and "raise HV_PREDICT_TIMEOUT" in message
    # Stopped inside the node, far from its end (2 s of a ~20 s run), not after it ran to completion.
    assert 1 <= step_reached(message, 400) < 200, message
    assert folders(root) == []
    assert_next_prediction_succeeds(runtime, root)


def test_a_node_that_ignores_the_interrupt_cannot_hang_the_prediction(runtime, tmp_path, monkeypatch):
    """A node that never checks for interruption (one 3 s step): the prediction still fails at the limit
    plus the grace, further runs are refused while ComfyUI is busy, and once it is free they succeed."""
    import comfy_runtime.backends.embedded as embedded

    monkeypatch.setattr(embedded, "INTERRUPT_GRACE_SECONDS", 0.3)
    root = tmp_path / "outputs"
    deaf = plumbing_with(("HVTestSlowSteps", {"steps": 1, "seconds_per_step": 3.0}))
    # The limit (1 s) must pass inside the deaf step, so the step is long enough to be reached on a busy machine.
    with pytest.raises(RunTimedOut, match=r"in node 9 \(HVTestSlowSteps\).*did not stop within 0.3 s; restart this worker"):
        renderer_for(runtime, root, deaf, timeout=1.0).render(REQUEST, QUIET)
    with pytest.raises(ComfyRuntimeError, match="has not stopped it yet; restart this worker"):
        renderer_for(runtime, root).render(REQUEST, QUIET)
    assert folders(root) == []
    # The deaf step ends (~3 s) and ComfyUI sees the interrupt before the next node: until then runs are refused.
    deadline = time.monotonic() + 30
    while True:
        try:
            rendered = renderer_for(runtime, root).render(REQUEST, QUIET)
            break
        except ComfyRuntimeError as error:
            assert "has not stopped it yet" in str(error), error
            assert time.monotonic() < deadline, "ComfyUI was still busy with the deaf node after 30 s"
            time.sleep(0.1)
    video = probe_video(rendered.video)
    assert (video.frames, video.width, video.height) == (13, 96, 64)


def test_the_time_limit_is_a_setting():
    assert JobLimits.from_settings(Settings(predict_timeout=90), None).timeout == 90
    assert JobLimits.from_settings(Settings(predict_timeout=0), None).timeout is None
    assert Settings().predict_timeout > 0, "predictions on shared GPUs are time-limited by default"


# -- cancel and failure leave nothing behind ---------------------------------------------------


def _raise_in_thread(thread: threading.Thread, exception: type[BaseException]) -> None:
    """How a sync predictor is cancelled: an exception raised asynchronously into the predict thread."""
    assert ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident), ctypes.py_object(exception)) == 1


def test_cancel_stops_comfyui_removes_the_folder_and_the_next_prediction_succeeds(runtime, tmp_path):
    root = tmp_path / "outputs"
    slow = plumbing_with(("HVTestSlowSteps", {"steps": 400, "seconds_per_step": 0.05}))
    outcome: dict = {}
    lines: list[str] = []

    def predict():
        try:
            renderer_for(runtime, root, slow).render(REQUEST, lines.append)
        except BaseException as error:  # noqa: B036 - the cancel is a BaseException on purpose
            outcome["error"] = error

    thread = threading.Thread(target=predict)
    thread.start()
    deadline = time.monotonic() + 60  # a bound for a broken run only: the cancel waits for the node to step
    while not (folders(root) and any(re.search(r" step \d+/400", line) for line in lines)):
        assert thread.is_alive() and time.monotonic() < deadline, (outcome, lines[-5:])
        time.sleep(0.02)
    _raise_in_thread(thread, CancelationException)
    thread.join(30)
    assert not thread.is_alive(), "the cancelled prediction did not return within 30 s"
    assert isinstance(outcome.get("error"), CancelationException), outcome
    # ComfyUI stopped inside the node, far from its last step (the run is ~20 s uninterrupted).
    assert 1 <= step_reached("\n".join(lines), 400) < 200, lines[-5:]
    assert folders(root) == []
    assert_next_prediction_succeeds(runtime, root)


def test_renderer_cancel_interrupts_and_removes_the_folder(runtime, tmp_path):
    root = tmp_path / "outputs"
    renderer = renderer_for(runtime, root, plumbing_with(("HVTestSlowSteps", {"steps": 400, "seconds_per_step": 0.05})))
    lines: list[str] = []

    def log_line(line: str) -> None:  # cancel from another thread once the node is stepping, and wait for it
        lines.append(line)
        if " step 2/400" in line:
            canceller = threading.Thread(target=renderer.cancel)
            canceller.start()
            canceller.join()

    with pytest.raises(ExecutionInterrupted):
        renderer.render(REQUEST, log_line)
    assert step_reached("\n".join(lines), 400) == 2, lines[-5:]  # the very next step saw the cancel
    assert folders(root) == []


def test_a_failing_node_leaves_no_folder(runtime, tmp_path):
    root = tmp_path / "outputs"
    with pytest.raises(NodeExecutionError, match="injected failure"):
        renderer_for(runtime, root, plumbing_with(("HVTestFail", {"message": "injected failure"}))).render(REQUEST, QUIET)
    assert folders(root) == []


def test_a_finished_folder_holds_only_the_video_and_is_kept_for_cog_until_the_next_prediction(runtime, tmp_path):
    workflow = plumbing_with()
    workflow.graph["95"] = {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}}  # writes temp files
    renderer = renderer_for(runtime, tmp_path, workflow)
    first = renderer.render(REQUEST.model_copy(update={"output_format": "webm"}), QUIET)
    previews = [path for path in first.produced_files if path.parent == first.run_dir / "temp" and path.suffix == ".png"]
    taps = [path for path in first.produced_files if path.parent == first.run_dir and "_frame_" in path.name]
    assert previews, f"node 95 (PreviewImage) wrote its temp files: {first.produced_files}"
    assert len(taps) == 1 and taps[0].suffix == ".png", f"the frame tap wrote its animated PNG: {first.produced_files}"
    assert not any(path.exists() for path in previews + taps), "the previews and the tap's frames are removed"
    assert sorted(first.run_dir.iterdir()) == [first.video], "only the delivered video is left"
    assert probe_video(first.video).codec == "vp9", "Cog takes the file after predict() returns"
    second = renderer.render(REQUEST, QUIET)
    assert not first.run_dir.exists() and second.video.is_file()
    assert folders(tmp_path) == [second.run_dir.name]


def test_a_kept_folder_survives_the_next_prediction(runtime, tmp_path):
    """Delivery that fails (an upload) keeps the file and names it in the error: retention must not take it."""
    renderer = renderer_for(runtime, tmp_path)
    first = renderer.render(REQUEST, QUIET)
    renderer.keep(first)
    second = renderer.render(REQUEST, QUIET)
    assert first.video.is_file() and second.video.is_file()
    renderer.render(REQUEST, QUIET)
    assert first.video.is_file() and not second.run_dir.exists()


# -- ComfyUI's web server ----------------------------------------------------------------------


def _listening() -> set:
    return {c.laddr for c in psutil.Process().net_connections(kind="inet") if c.status == psutil.CONN_LISTEN}


def test_embedded_comfyui_opens_no_port(hv_env, runtime, tmp_path, monkeypatch):
    """Embedded mode never starts ComfyUI's web server (docs/limits-and-faults.md: debugging uses a separate ComfyUI)."""
    from predict import Predictor

    before = _listening()
    monkeypatch.setenv("HV_OUTPUT_DIR", str(tmp_path))
    predictor = Predictor()
    predictor.setup()
    path = call_predict(predictor, prompt="x", width=64, height=64, num_frames=9, steps=1, fps=8, seed=1)
    assert path.is_file()
    assert _listening() - before == set()
    server = sys.modules["server"]
    assert not isinstance(server.PromptServer.instance, server.PromptServer)
