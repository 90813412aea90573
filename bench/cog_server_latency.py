"""Time to READY and per-prediction overhead of the real Cog server on the plumbing graph.

Baseline, measured in the same minute: the same graph run by ComfyUI's executor in-process
(RunResult.execution_seconds), and the encode of the delivered file (Rendered.timings).
Prints medians and the ratio HTTP wall time / ComfyUI time.
    .venv/bin/python bench/cog_server_latency.py [runs]
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from harness import FIXTURE_CUSTOM_NODES, machine_line

from comfy_runtime.cog_schema import write_schema
from local_servers.cog_server import CogServer

INPUTS = {"prompt": "bench", "width": 64, "height": 64, "num_frames": 9, "fps": 12, "seed": 1}


def main(runs: int = 20) -> None:
    write_schema()
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            "HV_WORKFLOW": "plumbing_video",
            "HV_MODELS_DIR": str(Path(tmp) / "models"),
            "HV_OUTPUT_DIR": str(Path(tmp) / "outputs"),
            "HV_DEVICE": "cpu",
            "HV_EXTRA_CUSTOM_NODES": json.dumps([str(FIXTURE_CUSTOM_NODES)]),
        }
        started = time.perf_counter()
        with CogServer(env, Path(tmp) / "server.log") as server:
            server.wait_until_ready()
            ready = time.perf_counter() - started
            walls, predict_times = [], []
            for _ in range(runs + 1):
                # coglet frees its slot a moment after answering a sync prediction: a POST sent at once can get
                # 409 "at capacity", so each one waits for READY first (outside the timed span).
                server.wait_until_ready()
                t0 = time.perf_counter()
                body = server.predict(INPUTS).json()
                walls.append(time.perf_counter() - t0)
                if body.get("status") != "succeeded":
                    raise SystemExit(f"prediction failed: {body.get('error')}\n{server.logs()[-2000:]}")
                predict_times.append(body["metrics"]["predict_time"])
            walls, predict_times = walls[1:], predict_times[1:]  # first one warms caches

        # Baseline: ComfyUI alone, same graph, this process.
        os.environ.update(env)
        from comfy_runtime.delivery.deliverer import FileDelivery
        from comfy_runtime.service import VideoService
        from comfy_runtime.settings import Settings

        renderer = VideoService.from_settings(Settings(warm_start=False), FileDelivery())
        renderer.start()
        from comfy_runtime.job.request import VideoRequest

        comfy_times, encode_times = [], []
        for _ in range(runs + 1):
            timings = renderer.render(VideoRequest(**INPUTS), log_line=lambda _: None).timings
            comfy_times.append(timings["comfyui_seconds"])
            encode_times.append(timings["encode_seconds"])
        comfy_times, encode_times = comfy_times[1:], encode_times[1:]

    wall, predict_time, comfy, encode = (statistics.median(x) for x in (walls, predict_times, comfy_times, encode_times))
    print(machine_line(runs=runs))
    print(f"time to READY (process start -> READY)       {ready:8.2f} s")
    print(f"median HTTP round trip                        {wall * 1000:8.1f} ms")
    print(f"median predict_time (coglet metric)           {predict_time * 1000:8.1f} ms")
    print(f"median ComfyUI execution (baseline)           {comfy * 1000:8.1f} ms")
    print(f"median encode of the delivered file           {encode * 1000:8.1f} ms")
    print(f"overhead beyond ComfyUI per prediction        {(wall - comfy) * 1000:8.1f} ms")
    print(f"  of which not the delivered file's encode    {(wall - comfy - encode) * 1000:8.1f} ms")
    print(f"ratio HTTP round trip / ComfyUI execution     {wall / comfy:8.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20)
