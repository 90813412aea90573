"""One contract, two backends: the embedded runtime (ComfyUI in this process) and the remote one
(a real ComfyUI server from the same pinned checkout, started here on 127.0.0.1 with the session's
models folder and the fixture custom nodes, and stopped by its process group).

The remote-only tests below the contract cover what only a network backend has: a websocket that
drops mid-run, a server that never answers, uploads, and an interrupt that must not hit another
client's prompt.
"""

from __future__ import annotations

import copy
import threading
import time
import uuid

import httpx
import numpy as np
import pytest
from PIL import Image

from comfy_runtime.backends.contract import NodeStarted, StepProgress
from comfy_runtime.backends.embedded import EmbeddedRuntime
from comfy_runtime.backends.remote import ComfyUIUnreachable, RemoteRuntime, safe_upload_name
from comfy_runtime.errors import ExecutionInterrupted, NodeExecutionError, RunTimedOut, WorkflowInvalidError
from comfy_runtime.graph.workflow import load_workflow
from comfy_runtime.settings import Settings
from comfy_runtime.supply.comfyui_source import resolve_comfyui_path
from local_servers.comfyui_server import ComfyUIServer
from local_servers.processes import free_port
from tests.support.graphs import plumbing_graph, splice
from tests.support.media import probe_video
from tests.support.paths import FIXTURE_CUSTOM_NODES


def with_node(class_type, **inputs):
    """A fresh plumbing graph with one fixture node (node 9) between its frames and CreateVideo."""
    return splice(plumbing_graph(), (class_type, inputs))


@pytest.fixture(scope="module")
def comfyui_server(hv_env, session_dirs, tmp_path_factory):
    server = ComfyUIServer(
        resolve_comfyui_path(Settings()), session_dirs["models"], tmp_path_factory.mktemp("comfyui-server"),
        [FIXTURE_CUSTOM_NODES],
    ).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def remote_runtime(comfyui_server):
    rt = RemoteRuntime(comfyui_server.url, startup_timeout=300, interrupt_grace=30)
    try:
        rt.start()
    except ComfyUIUnreachable as error:
        pytest.fail(f"{error}\n--- server log ---\n{comfyui_server.logs()}")
    yield rt
    rt.close()


@pytest.fixture(params=["embedded", "remote"])
def backend(request):
    return request.getfixturevalue("runtime" if request.param == "embedded" else "remote_runtime")


# -- the contract --------------------------------------------------------------------------------
def test_node_schemas_list_core_and_fixture_nodes(backend):
    schemas = backend.node_schemas()
    assert {"SaveVideo", "EmptyImage", "HVTestSlowSteps", "HVTestFail"} <= set(schemas)
    assert schemas["EmptyImage"].inputs["width"].minimum == 1


def test_the_hunyuan_workflow_validates(backend):
    backend.validate(load_workflow("hunyuan_t2v").graph)


@pytest.mark.parametrize(
    "node,field,value,expected",
    [
        ("10", "unet_name", "missing_dit.safetensors", "missing_dit.safetensors"),
        ("11", "type", "not_a_type", "not_a_type"),
        ("40", "width", 8, "width"),
        ("41", "sigmas", ["32", 0], "mismatch"),  # a SAMPLER where SIGMAS belong
    ],
)
def test_a_bad_graph_fails_validation_naming_the_node(backend, node, field, value, expected):
    graph = copy.deepcopy(load_workflow("hunyuan_t2v").graph)
    graph[node]["inputs"][field] = value
    with pytest.raises(WorkflowInvalidError) as error:
        backend.validate(graph)
    assert f"node {node} ({graph[node]['class_type']})" in str(error.value) and expected in str(error.value)
    assert node in error.value.node_errors


def graph_with_a_broken_second_output() -> dict:
    """A valid plumbing graph plus a second output whose input is below its node's minimum: ComfyUI's own
    validate_prompt calls such a graph valid (one output is) and would run only that part."""
    graph = plumbing_graph(frames=5)
    graph["90"] = {"class_type": "EmptyImage", "inputs": {"width": -64, "height": 64, "batch_size": 1, "color": 0}}
    graph["91"] = {"class_type": "SaveImage", "inputs": {"images": ["90", 0], "filename_prefix": f"part{uuid.uuid4().hex}"}}
    return graph


def test_a_graph_valid_only_in_part_is_refused_by_validate_and_run(backend, tmp_path):
    graph = graph_with_a_broken_second_output()
    with pytest.raises(WorkflowInvalidError, match=r"node 90 \(EmptyImage\)"):
        backend.validate(graph)
    with pytest.raises(WorkflowInvalidError, match="node 90"):
        backend.run(graph, tmp_path / "run")
    assert not any((tmp_path / "run").rglob("*.mp4")), "nothing of the valid part may have run"


def test_running_a_bad_graph_is_refused_before_it_runs(backend, tmp_path):
    graph = plumbing_graph()
    graph["1"]["inputs"]["width"] = 0
    with pytest.raises(WorkflowInvalidError, match=r"node 1 \(EmptyImage\)") as error:
        backend.run(graph, tmp_path / "refused")
    assert "1" in error.value.node_errors
    assert not list((tmp_path / "refused").glob("*.mp4"))


def test_runs_the_plumbing_graph_and_returns_the_video(backend, tmp_path):
    events = []
    result = backend.run(plumbing_graph(width=96, height=80, frames=13, fps=8.0), tmp_path / "run", events.append)
    assert len(result.files) == 1
    path = result.files[0]
    assert path.is_absolute() and path.parent == (tmp_path / "run").resolve() and path.is_file()
    video = probe_video(path)
    assert (video.frames, video.width, video.height, video.fps) == (13, 96, 80, 8.0)
    assert [e.class_type for e in events if isinstance(e, NodeStarted)] == [
        "EmptyImage", "ImageAddNoise", "CreateVideo", "SaveVideo",
    ]
    assert result.execution_seconds > 0


def test_step_progress_arrives_in_order(backend, tmp_path):
    events = []
    backend.run(with_node("HVTestSlowSteps", steps=5, seconds_per_step=0.0), tmp_path, events.append)
    steps = [(e.step, e.total, e.node_id, e.class_type) for e in events if isinstance(e, StepProgress)]
    assert steps == [(i, 5, "9", "HVTestSlowSteps") for i in range(1, 6)]
    nodes = [e.node_id for e in events if isinstance(e, NodeStarted)]
    assert nodes.index("9") < nodes.index("3")  # the slow node reports before the video is made


def test_a_failing_node_is_reported_and_the_runtime_stays_usable(backend, tmp_path):
    with pytest.raises(NodeExecutionError) as error:
        backend.run(with_node("HVTestFail", message="boom at frame 3"), tmp_path / "bad")
    failure = error.value.failure
    assert (failure.node_id, failure.class_type) == ("9", "HVTestFail")
    assert failure.message == "boom at frame 3" and "boom at frame 3" in str(error.value)
    after = backend.run(plumbing_graph(), tmp_path / "good")
    assert probe_video(after.files[0]).frames == 9


def test_interrupt_mid_run_then_the_next_run_succeeds(backend, tmp_path):
    graph = with_node("HVTestSlowSteps", steps=400, seconds_per_step=0.05)  # ~20 s uninterrupted
    events = []

    def on_progress(event):
        events.append(event)
        if isinstance(event, StepProgress) and event.step == 2:
            canceller = threading.Thread(target=backend.interrupt)  # a cancel comes from another thread
            canceller.start()
            canceller.join()  # ... and has landed before the run goes on

    with pytest.raises(ExecutionInterrupted) as error:
        backend.run(graph, tmp_path / "interrupted", on_progress)
    assert not isinstance(error.value, RunTimedOut)
    steps = [e.step for e in events if isinstance(e, StepProgress)]
    assert steps[:2] == [1, 2] and max(steps) < 400, steps[-5:]  # stopped inside the node, not run out
    if isinstance(backend, EmbeddedRuntime):
        # In-process the interrupt is seen at the node's very next step, before that step is reported.
        assert steps == [1, 2], steps
    assert not list((tmp_path / "interrupted").glob("*.mp4"))
    after = backend.run(plumbing_graph(), tmp_path / "after")
    assert probe_video(after.files[0]).frames == 9


def test_a_run_past_its_time_limit_is_stopped(backend, tmp_path):
    graph = with_node("HVTestSlowSteps", steps=400, seconds_per_step=0.05)  # ~20 s uninterrupted
    # 2 s: long enough for the run to reach node 9 on a busy machine, far short of its end.
    with pytest.raises(RunTimedOut, match=r"time limit of 2 s.*node 9 \(HVTestSlowSteps\) at step \d+/400"):
        backend.run(graph, tmp_path / "slow", timeout=2.0)
    after = backend.run(plumbing_graph(), tmp_path / "after")
    assert probe_video(after.files[0]).frames == 9


def test_identical_graphs_each_produce_their_own_file(backend, tmp_path):
    """ComfyUI's cache skips unchanged nodes; a save node must still run for every prediction."""
    first = backend.run(plumbing_graph(), tmp_path / "one")
    second = backend.run(plumbing_graph(), tmp_path / "two")
    assert first.files[0] != second.files[0] and second.files[0].is_file()
    assert probe_video(second.files[0]).frames == 9


# -- remote only ---------------------------------------------------------------------------------
def test_the_run_survives_a_websocket_drop_and_keeps_reporting(remote_runtime, tmp_path):
    # 100 steps of 0.03 s: ~3 s left after the drop at step 3 for the reconnect to report some of them.
    graph = with_node("HVTestSlowSteps", steps=100, seconds_per_step=0.03)
    events = []
    connects_at_the_drop = []

    def on_progress(event):
        events.append(event)
        if isinstance(event, StepProgress) and event.step == 3:
            connects_at_the_drop.append(remote_runtime.ws_connects)  # the socket is open by now, whatever ran before
            remote_runtime.drop_websocket()  # as a network failure would: the socket dies under the reader

    result = remote_runtime.run(graph, tmp_path / "dropped", on_progress)
    assert remote_runtime.ws_connects == connects_at_the_drop[0] + 1  # one reconnect
    steps = [e.step for e in events if isinstance(e, StepProgress)]
    assert steps[-1] == 100 and any(step > 4 for step in steps)  # progress came back over the new socket
    assert probe_video(result.files[0]).frames == 9


def test_a_prompt_that_ends_while_the_websocket_is_down_is_reconciled_from_history(remote_runtime, tmp_path, caplog):
    graph = with_node("HVTestSlowSteps", steps=10, seconds_per_step=0.03)
    http = httpx.Client(base_url=remote_runtime.base_url)
    real_ws_url = remote_runtime.ws_url
    ended_while_down = threading.Event()

    def give_the_websocket_back_once_the_prompt_has_ended(prompt_id):
        deadline = time.monotonic() + 60
        while prompt_id not in http.get("/history", params={"max_items": 1}).json() and time.monotonic() < deadline:
            time.sleep(0.02)
        ended_while_down.set()
        remote_runtime.ws_url = real_ws_url

    def on_progress(event):
        if isinstance(event, StepProgress) and event.step == 1 and remote_runtime.ws_url == real_ws_url:
            # The socket dies and every reconnect is refused (nothing listens there) until the prompt has ended.
            remote_runtime.ws_url = f"ws://127.0.0.1:{free_port()}/ws"
            remote_runtime.drop_websocket()
            threading.Thread(target=give_the_websocket_back_once_the_prompt_has_ended,
                             args=(remote_runtime.prompt_in_flight,), daemon=True).start()

    with caplog.at_level("WARNING", logger="comfy_runtime.backends.remote"):
        result = remote_runtime.run(graph, tmp_path / "gap", on_progress)
    http.close()
    assert ended_while_down.is_set(), "the websocket was never down while the prompt ran"
    assert any("is down, retrying" in record.getMessage() for record in caplog.records), caplog.text
    assert probe_video(result.files[0]).frames == 9 and result.execution_seconds > 0


def test_start_names_what_it_waited_for(tmp_path, monkeypatch):
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens here
    runtime = RemoteRuntime(url, startup_timeout=0.5)
    asked = []
    real_get = runtime._http.get

    def counting_get(path, *args, **kwargs):
        asked.append(path)
        return real_get(path, *args, **kwargs)

    monkeypatch.setattr(runtime._http, "get", counting_get)
    with pytest.raises(ComfyUIUnreachable) as error:
        runtime.start()
    message = str(error.value)
    assert url in message and "GET /system_stats" in message and "HV_COMFYUI_STARTUP_TIMEOUT" in message
    assert "within 0.5 s" in message and "last error: ConnectError" in message, message
    # It kept asking until its start-up timeout ran out rather than giving up on the first refusal.
    assert len(asked) >= 2 and set(asked) == {"/system_stats"}, asked
    runtime.close()


def queue_ids(client: httpx.Client) -> tuple[list[str], list[str]]:
    """The prompt ids ComfyUI is running and has pending."""
    queue = client.get("/queue").json()
    return [item[1] for item in queue["queue_running"]], [item[1] for item in queue["queue_pending"]]


def wait_until(condition, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout:g} s"
        time.sleep(0.02)


def their_status(client: httpx.Client, prompt_id: str) -> dict:
    wait_until(lambda: prompt_id in client.get(f"/history/{prompt_id}").json(), "their prompt ending", 120)
    return client.get(f"/history/{prompt_id}").json()[prompt_id]["status"]


def test_interrupt_leaves_another_clients_running_prompt_alone(remote_runtime, comfyui_server, tmp_path):
    """ComfyUI's interrupt is global: ours must not stop a prompt someone else is running."""
    other = httpx.Client(base_url=comfyui_server.url)
    theirs = with_node("HVTestSlowSteps", steps=100, seconds_per_step=0.05)
    their_id = other.post("/prompt", json={"prompt": theirs, "client_id": "someone-else"}).json()["prompt_id"]
    wait_until(lambda: queue_ids(other)[0] == [their_id], "their prompt running")
    ours = with_node("HVTestSlowSteps", steps=400, seconds_per_step=0.05)
    outcome = {}

    def run_ours():
        try:
            remote_runtime.run(ours, tmp_path / "ours")
        except BaseException as error:  # noqa: BLE001 - the test inspects it
            outcome["error"] = error

    thread = threading.Thread(target=run_ours)
    thread.start()
    # Ours is queued behind theirs, which is still running: the interrupt must take ours out and only ours.
    wait_until(lambda: remote_runtime.prompt_in_flight is not None
               and queue_ids(other) == ([their_id], [remote_runtime.prompt_in_flight]),
               "our prompt queued behind theirs")
    remote_runtime.interrupt()
    thread.join(timeout=60)
    assert isinstance(outcome.get("error"), ExecutionInterrupted), outcome
    status = their_status(other, their_id)
    other.close()
    assert status["status_str"] == "success", status


def test_a_time_limit_passed_in_the_queue_removes_ours_and_spares_theirs(remote_runtime, comfyui_server, tmp_path):
    other = httpx.Client(base_url=comfyui_server.url)
    theirs = with_node("HVTestSlowSteps", steps=60, seconds_per_step=0.05)
    their_id = other.post("/prompt", json={"prompt": theirs, "client_id": "someone-else"}).json()["prompt_id"]
    wait_until(lambda: queue_ids(other)[0] == [their_id], "their prompt running")
    with pytest.raises(RunTimedOut, match="in the queue"):
        remote_runtime.run(plumbing_graph(), tmp_path / "queued", timeout=0.3)
    status = their_status(other, their_id)
    queue = other.get("/queue").json()
    other.close()
    assert status["status_str"] == "success", status
    assert queue == {"queue_running": [], "queue_pending": []}


def test_upload_strips_folders_from_the_name_and_the_image_is_usable(remote_runtime, comfyui_server, tmp_path):
    source = tmp_path / "input.png"
    Image.fromarray(np.full((24, 40, 3), 200, dtype=np.uint8)).save(source)
    name = remote_runtime.upload_input(source, name="../../outside me.png")
    assert name == "outside_me.png"
    assert (comfyui_server.work_dir / "base" / "input" / "outside_me.png").is_file()
    assert not (comfyui_server.work_dir / "outside me.png").exists()
    graph = {
        "1": {"class_type": "LoadImage", "inputs": {"image": name}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": f"up{uuid.uuid4().hex}"}},
    }
    result = remote_runtime.run(graph, tmp_path / "out")
    assert len(result.files) == 1 and Image.open(result.files[0]).size == (40, 24)


@pytest.mark.parametrize("bad", ["..", "", "/", "../"])
def test_upload_names_that_are_only_a_path_are_refused(bad):
    with pytest.raises(ValueError, match="plain name"):
        safe_upload_name(bad)


def test_the_renderer_serves_a_video_through_the_remote_backend(remote_runtime, comfyui_server, hv_env, tmp_path):
    from comfy_runtime.job.request import VideoRequest
    from comfy_runtime.service import VideoService

    settings = Settings(backend="remote", comfyui_url=comfyui_server.url, output_dir=tmp_path / "outputs")
    renderer = VideoService.from_settings(settings)
    assert isinstance(renderer.model.runtime, RemoteRuntime)
    renderer.start()
    lines = []
    rendered = renderer.render(VideoRequest(prompt="remote", width=64, height=64, num_frames=9, fps=12, seed=3), lines.append)
    renderer.close()
    video = probe_video(rendered.video)
    assert (video.frames, video.width, video.height) == (9, 64, 64)
    assert rendered.video.is_relative_to((tmp_path / "outputs").resolve())
    # No frame tap on a remote server (it would keep every lossless file): its own SaveVideo file is delivered.
    assert "node 2 ImageAddNoise" in lines and "node 4 SaveVideo" in lines
    assert not any("SaveAnimatedPNG" in line for line in lines)
