"""What the bench scripts need around the product beyond the shared servers: derived graphs, an in-process
setup, a Range server in a process of its own, the machine line every figure starts with.

The servers the tests start too (coglet, ComfyUI's server, moto, PostgreSQL, webhooks, the farm's processes)
come from local_servers/, one copy for both; the bench does not import tests/.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from comfy_runtime.graph.workflow import WORKFLOWS_DIR, Workflow, load_workflow  # noqa: E402
from local_servers.processes import free_port, stop_process_group  # noqa: E402
from local_servers.range_server import RangeServer  # noqa: E402

# The fixture node pack (a slow stepping node, a failing node, OOM faults): data the bench loads, not code it imports.
FIXTURE_CUSTOM_NODES = ROOT / "tests" / "fixture_custom_nodes"
FINAL_STATUSES = {"succeeded", "failed", "canceled"}


# -- the plumbing graph, in-process ---------------------------------------------------------------
def plumbing_env(root: Path) -> dict[str, str]:
    """HV_* variables for an in-process Predictor on the weight-free plumbing graph under root: placeholder
    weight files (validation only lists them), the fixture nodes, the CPU."""
    from comfy_runtime.supply.manifest import load_manifest

    models = root / "models"
    for entry in load_manifest():
        (models / entry.relative_path).parent.mkdir(parents=True, exist_ok=True)
        (models / entry.relative_path).write_bytes(b"")
    return {
        "HV_WORKFLOW": "plumbing_video", "HV_MODELS_DIR": str(models), "HV_OUTPUT_DIR": str(root / "outputs"),
        "HV_DEVICE": "cpu", "HV_EXTRA_CUSTOM_NODES": json.dumps([str(FIXTURE_CUSTOM_NODES)]),
    }


def plumbing_with(*nodes: tuple[str, dict[str, Any]]) -> Workflow:
    """The plumbing workflow with fixture nodes chained between its frames (node 2) and CreateVideo (node 3),
    as nodes 9, 10, ..."""
    base = load_workflow("plumbing_video")
    graph = copy.deepcopy(base.graph)
    upstream = ["2", 0]
    for index, (class_type, inputs) in enumerate(nodes):
        graph[str(9 + index)] = {"class_type": class_type, "inputs": {"image": upstream, **inputs}}
        upstream = [str(9 + index), 0]
    graph["3"]["inputs"]["images"] = upstream
    return Workflow(name="plumbing_bench", graph=graph, bindings=base.bindings)


def write_slow_workflow(folder: Path, seconds_per_step: float) -> Path:
    """A workflows folder (HV_WORKFLOWS_DIR) with plumbing_slow: `steps` drives HVTestSlowSteps (node 9)."""
    slow = plumbing_with(("HVTestSlowSteps", {"steps": 1, "seconds_per_step": seconds_per_step}))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "plumbing_slow.json").write_text(json.dumps(slow.graph))
    bindings = (WORKFLOWS_DIR / "plumbing_video.bindings.toml").read_text()
    (folder / "plumbing_slow.bindings.toml").write_text(bindings + 'steps = [{ node = "9", input = "steps" }]\n')
    return folder


def frame_count(path: Path) -> int:
    import av

    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


# -- servers (the shared ones live in local_servers/) ------------------------------------------------
@contextlib.contextmanager
def range_server_process(root: Path, delay_per_chunk: float) -> Iterator[str]:
    """serve_ranges in another process (so the client's and the server's Python do not share a GIL); yields its URL."""
    port = free_port()
    process = subprocess.Popen([sys.executable, __file__, "serve-ranges", str(root), str(port), str(delay_per_chunk)],
                               stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert process.stdout is not None
        yield process.stdout.readline().strip()  # the server prints its URL once it listens
    finally:
        stop_process_group(process, grace=10)


def serve_ranges(root: Path, port: int, delay_per_chunk: float) -> None:
    with RangeServer(root, port=port, delay_per_chunk=delay_per_chunk) as server:
        print(server.url, flush=True)
        threading.Event().wait()  # until range_server_process stops this process


def machine_line(**extra: Any) -> str:
    """Where and when a figure was measured: it goes on the first line of every bench's output."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    details = "".join(f", {key}={value}" for key, value in extra.items())
    return (f"machine: {os.cpu_count()} cores, {sys.platform}, load average {load:.1f}; "
            f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC{details}")


if __name__ == "__main__" and sys.argv[1:2] == ["serve-ranges"]:
    serve_ranges(Path(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]))
