"""Bad input and faults through the real Cog HTTP server (coglet) with the real predict.py.

The server serves a derived plumbing workflow in which `steps` drives a slow, interruptible fixture
node (HVTestSlowSteps, 0.05 s a step), with a tight memory budget and time limit, so that refusals
and the time limit can be seen over HTTP; cancel runs on a second server without a time limit."""

import re
import time
import uuid

import psutil
import pytest

from comfy_runtime.job.prompt import MAX_PROMPT_CHARS
from local_servers.cog_server import CogServer
from tests.support.graphs import slow_steps_logged, write_slow_workflow
from tests.support.media import probe_video, write_data_uri

pytestmark = pytest.mark.cog_server

BUDGET = 64 * 64 * 9
TIMEOUT_S = 2.0
SECONDS_PER_STEP = 0.05


def slow_server(hv_env, root, seconds_per_step=SECONDS_PER_STEP, **env):
    """A Cog server on 127.0.0.1 serving plumbing_slow (stopped on exit); yields it with its outputs folder."""
    workflows, outputs = write_slow_workflow(root / "workflows", seconds_per_step=seconds_per_step), root / "outputs"
    env = {**hv_env, "HV_WORKFLOW": "plumbing_slow", "HV_WORKFLOWS_DIR": str(workflows), "HV_OUTPUT_DIR": str(outputs),
           **env}
    with CogServer(env, root / "server.log") as server:
        server.wait_until_ready()
        yield server, outputs


@pytest.fixture(scope="module")
def served(hv_env, tmp_path_factory):
    yield from slow_server(hv_env, tmp_path_factory.mktemp("hardening"),
                           HV_MAX_PIXEL_FRAMES=str(BUDGET), HV_PREDICT_TIMEOUT=str(TIMEOUT_S))


def predict(server, inputs, **kwargs):
    return server.predict_when_ready(inputs, **kwargs)


def run_folders(outputs):
    return sorted(p.name for p in outputs.iterdir() if p.name != ".work") if outputs.exists() else []


def ok_inputs(**overrides):
    return {"prompt": "x", "width": 64, "height": 64, "num_frames": 9, "steps": 1, "fps": 8, "seed": 1, **overrides}


@pytest.mark.parametrize("prompt", ["a\u0000b", "fox\u0007 in snow", "   ", "", "a\u0085b"])
def test_prompt_text_the_schema_can_judge_gets_422_before_predict_runs(served, prompt):
    """An empty prompt or a control character: the schema's minLength and pattern (cog.Input min_length and regex)."""
    server, outputs = served
    before = run_folders(outputs)
    response = predict(server, ok_inputs(prompt=prompt))
    assert response.status_code == 422, response.text
    assert {error["loc"][-1] for error in response.json()["detail"]} == {"prompt"}  # "" breaks minLength and pattern
    assert run_folders(outputs) == before


@pytest.mark.parametrize(
    "prompt,expected",
    [("a<|eot_id|>b", "tokenizer marker"), ("cat " * 300, "tokens long; HunyuanVideo reads at most 256")],
)
def test_bad_prompt_text_fails_with_the_rule_in_one_line(served, prompt, expected):
    server, _ = served
    body = predict(server, ok_inputs(prompt=prompt)).json()
    assert body["status"] == "failed" and expected in body["error"], body
    assert "\n" not in body["error"] and "ValidationError" not in body["error"] and "pydantic" not in body["error"]


@pytest.mark.parametrize(
    "raw", [b'"a\\ud800b"', b'"a\xff\xfeb"'], ids=["lone-surrogate-escape", "invalid-utf8-bytes"]
)
def test_undecodable_prompt_bytes_are_refused_at_the_edge_with_the_field(served, raw):
    server, outputs = served
    before = run_folders(outputs)
    body = b'{"input": {"prompt": ' + raw + b', "width": 64, "height": 64, "num_frames": 9, "steps": 1}}'
    server.wait_for_status({"READY"}, timeout=60)
    response = server.client.post("/predictions", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and "input.prompt" in response.text, response.text
    assert run_folders(outputs) == before


def test_a_prompt_at_the_character_limit_passes_the_schema_and_meets_the_token_rule(served):
    """The schema's maxLength is the exact edge: one character more is a 422 (below), this many is let in
    and refused by the next rule, the token count, with that rule's message."""
    server, outputs = served
    before = run_folders(outputs)
    response = predict(server, ok_inputs(prompt="x " * (MAX_PROMPT_CHARS // 2)))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "failed" and "tokens long; HunyuanVideo reads at most 256" in body["error"], body
    assert run_folders(outputs) == before


@pytest.mark.parametrize(
    "inputs,field",
    [({"prompt": "x" * (MAX_PROMPT_CHARS + 1)}, "prompt"), ({"prompt": "x", "width": 1296}, "width"),
     ({"prompt": "x", "height": 48}, "height"), ({"prompt": "x", "num_frames": 133}, "num_frames")],
)
def test_past_the_bounds_gets_422_naming_the_field(served, inputs, field):
    server, _ = served
    response = predict(server, inputs)
    assert response.status_code == 422, response.text
    assert [error["loc"][-1] for error in response.json()["detail"]] == [field]


def test_a_job_over_the_memory_budget_fails_at_once_with_what_to_lower(served):
    server, outputs = served
    before = run_folders(outputs)
    body = predict(server, ok_inputs(num_frames=13)).json()
    assert body["status"] == "failed", body
    assert "memory budget of 36,864" in body["error"] and "lower num_frames to 9" in body["error"]
    # Refused before ComfyUI ran anything: no node started (a run logs `node <id> <class>` per node).
    assert not re.search(r"^node ", body.get("logs") or "", re.MULTILINE), body["logs"]
    assert run_folders(outputs) == before


def test_a_path_in_an_unknown_input_reaches_no_path(served, tmp_path):
    """coglet drops inputs the schema does not declare, so the predictor never sees filename_prefix (and
    VideoRequest would refuse it: test_input_hardening); the path-like prompt is only text. The prediction
    succeeds, its video is where every video goes, and nothing named `escaped` exists anywhere near."""
    server, outputs = served
    response = predict(server, ok_inputs(filename_prefix="../../../escaped", prompt="../../../escaped"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "succeeded", body
    assert probe_video(write_data_uri(body["output"], tmp_path / "out.mp4")).frames == 9
    (run,) = run_folders(outputs)
    assert [p.suffix for p in (outputs / run).iterdir()] == [".mp4"]
    assert not list(outputs.parent.rglob("escaped*")) and not list(outputs.parent.parent.glob("escaped*"))
    # coglet 0.23 strips undeclared inputs before predict() and ignores additionalProperties: false, so Cog mode
    # cannot refuse them (the gateway does, test_farm.py); what it can do is say which it dropped.
    stripped = [line for line in server.logs().splitlines() if "Stripped unknown input fields" in line]
    assert stripped and "filename_prefix" in stripped[-1], server.logs()[-3000:]


def test_a_prediction_past_the_time_limit_fails_clearly_and_the_next_succeeds(served, tmp_path):
    server, outputs = served
    body = predict(server, ok_inputs(steps=100)).json()  # 100 x 0.05 s: past the 2 s limit
    assert body["status"] == "failed", body
    assert f"time limit of {TIMEOUT_S:g} s (HV_PREDICT_TIMEOUT) in node 9 (HVTestSlowSteps)" in body["error"]
    assert run_folders(outputs) == []
    body = predict(server, ok_inputs(steps=2)).json()
    assert body["status"] == "succeeded", body
    assert probe_video(write_data_uri(body["output"], tmp_path / "after.mp4")).frames == 9


@pytest.fixture(scope="module")
def untimed(hv_env, tmp_path_factory):
    """No time limit and 0.5 s a step: a long run can only end by finishing (50 s at 100 steps) or by the cancel."""
    yield from slow_server(hv_env, tmp_path_factory.mktemp("untimed"), seconds_per_step=0.5, HV_PREDICT_TIMEOUT="0")


def test_cancel_over_http_ends_canceled_and_removes_the_prediction_folder(untimed, webhooks):
    server, outputs = untimed
    kept = run_folders(outputs)  # the previous prediction's folder, kept for Cog until this one starts
    prediction_id = uuid.uuid4().hex
    server.wait_for_status({"READY"}, timeout=60)
    response = server.client.post(
        "/predictions", headers={"Prefer": "respond-async"},
        json={"id": prediction_id, "input": ok_inputs(steps=100), "webhook": f"{webhooks.url}/hook",
              "webhook_events_filter": ["start", "logs", "completed"]},
    )  # 100 x 0.5 s = 50 s: it cannot finish before the cancel lands
    assert response.status_code == 202, response.text
    deadline = time.monotonic() + 60
    while not any(slow_steps_logged(e.get("logs") or "") for e in webhooks.for_prediction(prediction_id)):
        assert time.monotonic() < deadline, (webhooks.for_prediction(prediction_id), server.logs())
        time.sleep(0.05)
    running = run_folders(outputs)
    assert running and running != kept, "the prediction has no folder of its own while it runs"
    assert server.client.post(f"/predictions/{prediction_id}/cancel").status_code == 200
    final = webhooks.wait_final(prediction_id)
    assert final["status"] == "canceled", final
    assert max(slow_steps_logged(final["logs"])) < 100, "ComfyUI stopped inside the node"
    deadline = time.monotonic() + 10
    while run_folders(outputs) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert run_folders(outputs) == [], server.logs()
    body, _ = server.wait_for_status({"READY"})
    assert body["status"] == "READY"


def test_the_only_listening_socket_is_cogs_own_port_on_127_0_0_1(served):
    """ComfyUI's web server is never started: after setup and a prediction, every process of the server
    (coglet and the worker that holds ComfyUI) together listen on one TCP socket, Cog's, where it was
    told to bind. ComfyUI's would be a second one (8188 by default) in the worker."""
    server, _ = served
    assert predict(server, ok_inputs()).json()["status"] == "succeeded"
    parent = psutil.Process(server.process.pid)
    tree = [parent, *parent.children(recursive=True)]
    assert len(tree) >= 2, "coglet runs the predictor in a worker process"
    listening = {
        (process.pid, connection.laddr.ip, connection.laddr.port)
        for process in tree
        for connection in process.net_connections(kind="inet")
        if connection.status == psutil.CONN_LISTEN
    }
    assert {(ip, port) for _, ip, port in listening} == {("127.0.0.1", server.port)}, listening
