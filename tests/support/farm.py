"""The render farm's parts as real processes for tests: worker processes, the gateway, the derived workflow.

Workers render `plumbing_farm`: the plumbing graph with `steps` driving the stepping fixture node
HVTestSlowSteps (a render lasts as long as a test needs, and reports progress per step) and the seed
driving HVTestFailOnValue (seed 666 fails in a node; every other seed renders).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from comfy_runtime.farm.tokens import create as create_token
from comfy_runtime.graph.workflow import WORKFLOWS_DIR
from local_servers.farm_processes import GatewayProcess

FAIL_SEED = 666
SECONDS_PER_STEP = 0.1


def write_farm_workflow(folder: Path, seconds_per_step: float = SECONDS_PER_STEP) -> Path:
    graph = json.loads((WORKFLOWS_DIR / "plumbing_video.json").read_text())
    graph["9"] = {"class_type": "HVTestSlowSteps",
                  "inputs": {"image": ["2", 0], "steps": 1, "seconds_per_step": seconds_per_step}}
    graph["10"] = {"class_type": "HVTestFailOnValue", "inputs": {"image": ["9", 0], "value": 0, "fail_value": FAIL_SEED}}
    graph["3"]["inputs"]["images"] = ["10", 0]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "plumbing_farm.json").write_text(json.dumps(graph))
    bindings = (WORKFLOWS_DIR / "plumbing_video.bindings.toml").read_text()
    bindings = bindings.replace('seed = [{ node = "2", input = "seed" }]',
                                'seed = [{ node = "2", input = "seed" }, { node = "10", input = "value" }]')
    (folder / "plumbing_farm.bindings.toml").write_text(bindings + 'steps = [{ node = "9", input = "steps" }]\n')
    return folder


def job(**overrides) -> dict:
    """The smallest plumbing_farm job, as a client posts it."""
    return {"prompt": "a fox", "width": 64, "height": 64, "num_frames": 5, "steps": 1, "fps": 8, **overrides}


def wait_until(predicate, timeout: float = 60, interval: float = 0.1, message: str = "condition"):
    """Poll `predicate` until it returns something truthy; return it. A deadline, not a timed assertion."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"{message} not reached within {timeout:g} s")


@contextmanager
def gateway_with_token(env: dict[str, str], client, log: Path, token_name: str) -> Iterator[GatewayProcess]:
    """A gateway process whose requests carry a member token made for the test (tests/test_farm_tokens.py tests
    the tokens themselves); stopped on exit."""
    process = GatewayProcess(env, log).start()
    with client.store.connection() as conn:
        process.headers = {"Authorization": f"Bearer {create_token(conn, token_name).token}"}
    try:
        yield process.wait_ready()
    finally:
        process.stop()
