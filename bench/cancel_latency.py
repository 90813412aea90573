"""Cancel latency over HTTP: POST /predictions/{id}/cancel -> the prediction is `canceled`.

The real Cog server (coglet) with the real predict.py serves the plumbing graph with a slow, stepping
fixture node (HVTestSlowSteps); ComfyUI's interrupt lands at the node's next step, like a sampler's.
Baseline, measured in the same run: the step length itself. A cancel waits for the rest of the step it
lands in, and for the predict thread's next wake-up (it polls every 50 ms so that Cog's cancel can land).
Prints medians over the runs and the ratio latency / step.
    .venv/bin/python bench/cancel_latency.py [runs] [seconds_per_step]
"""

from __future__ import annotations

import json
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from harness import FIXTURE_CUSTOM_NODES, machine_line, write_slow_workflow

from comfy_runtime.cog_schema import write_schema
from local_servers.cog_server import CogServer
from local_servers.webhooks import WebhookReceiver

INPUTS = {"prompt": "bench", "width": 64, "height": 64, "num_frames": 9, "fps": 12, "seed": 1, "steps": 100}


def main(runs: int = 15, seconds_per_step: float = 0.1) -> None:
    write_schema()
    webhooks = WebhookReceiver()
    phases = random.Random(0)
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            "HV_WORKFLOW": "plumbing_slow",
            "HV_WORKFLOWS_DIR": str(write_slow_workflow(Path(tmp) / "workflows", seconds_per_step)),
            "HV_MODELS_DIR": str(Path(tmp) / "models"),
            "HV_OUTPUT_DIR": str(Path(tmp) / "outputs"),
            "HV_DEVICE": "cpu",
            "HV_EXTRA_CUSTOM_NODES": json.dumps([str(FIXTURE_CUSTOM_NODES)]),
        }
        to_canceled, to_ready, steps_reached = [], [], []
        with CogServer(env, Path(tmp) / "server.log") as server:
            server.wait_until_ready()
            for _ in range(runs):
                server.wait_until_ready()
                prediction_id = uuid.uuid4().hex
                server.client.post(
                    "/predictions", headers={"Prefer": "respond-async"},
                    json={"id": prediction_id, "input": INPUTS, "webhook": f"{webhooks.url}/hook",
                          "webhook_events_filter": ["logs", "completed"]},
                ).raise_for_status()
                while not any("HVTestSlowSteps step" in (e.get("logs") or "") for e in webhooks.for_prediction(prediction_id)):
                    time.sleep(0.01)
                time.sleep(seconds_per_step * (3 + phases.random()))  # at any point of a step, as a user's cancel
                started = time.monotonic()
                server.client.post(f"/predictions/{prediction_id}/cancel").raise_for_status()
                final = webhooks.wait_final(prediction_id)
                assert final["status"] == "canceled", final
                to_canceled.append(final["received_at"] - started)
                server.wait_until_ready()
                to_ready.append(time.monotonic() - started)
                steps_reached.append(final["logs"].count("HVTestSlowSteps step"))
    webhooks.close()

    canceled, ready = statistics.median(to_canceled), statistics.median(to_ready)
    print(machine_line(runs=runs))
    print(f"step length (baseline)                          {seconds_per_step * 1000:8.1f} ms")
    print(f"median cancel POST -> `canceled` webhook        {canceled * 1000:8.1f} ms "
          f"(min {min(to_canceled) * 1000:.1f}, max {max(to_canceled) * 1000:.1f})")
    print(f"median cancel POST -> /health-check READY       {ready * 1000:8.1f} ms")
    print(f"steps run before the cancel landed (of 100)     {statistics.median(steps_reached):8.0f}")
    print(f"ratio cancel latency / step length              {canceled / seconds_per_step:8.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 15, float(sys.argv[2]) if len(sys.argv) > 2 else 0.1)
