"""What access control and metrics cost the farm's gateway (issue 24), measured in one run on one machine.

A real PostgreSQL (initdb, 127.0.0.1) and two real gateway processes on it: one with tokens (every request
looks its token's hash up, nothing cached) and one with HV_FARM_AUTH=off. Both GET the same prediction `runs`
times, interleaved; printed: the median round trip of each and their ratio. Then GET /metrics (the backlog, and
the starts since the last scrape for the wait histogram, read from PostgreSQL at each scrape) with `rows` ended
predictions in the table: a scrape's cost should not grow with the table.
    .venv/bin/python bench/farm_auth_overhead.py [runs] [rows]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import machine_line  # noqa: E402
from comfy_runtime.farm.client import FarmClient  # noqa: E402
from comfy_runtime.farm.config import FarmSettings  # noqa: E402
from comfy_runtime.farm.tokens import authenticate, create  # noqa: E402
from local_servers.farm_processes import GatewayProcess  # noqa: E402
from local_servers.postgres_server import PostgresServer  # noqa: E402

INPUTS = {"prompt": "bench", "width": 64, "height": 64, "num_frames": 5, "steps": 1}


def timed(http: httpx.Client, path: str, headers: dict[str, str]) -> float:
    started = time.perf_counter()
    response = http.get(path, headers=headers)
    elapsed = time.perf_counter() - started
    assert response.status_code == 200, response.text
    return elapsed * 1000


def main(runs: int = 200, rows: int = 100_000) -> None:
    print(machine_line(runs=runs, rows=rows))
    with tempfile.TemporaryDirectory() as tmp, PostgresServer() as pg:
        env = {"HV_FARM_DATABASE_URL": pg.url, "HV_FARM_SYNC_WAIT_SECONDS": "0"}
        with FarmClient(FarmSettings(database_url=pg.url)) as client:
            client.ensure_schema()
            with client.store.connection() as conn:
                token = create(conn, "bench").token
                principal = authenticate(conn, f"Bearer {token}")
            prediction = client.submit(INPUTS, owner=principal)
            gateways = {"tokens": GatewayProcess(env, Path(tmp) / "on.log").start(),
                        "auth off": GatewayProcess({**env, "HV_FARM_AUTH": "off"}, Path(tmp) / "off.log").start()}
            try:
                for gateway in gateways.values():
                    gateway.wait_ready()
                headers = {"tokens": {"Authorization": f"Bearer {token}"}, "auth off": {}}
                times: dict[str, list[float]] = {name: [] for name in gateways}
                path = f"/predictions/{prediction['id']}"
                with httpx.Client(timeout=30) as http:
                    for name, gateway in gateways.items():  # warm both: the pools' first connections
                        timed(http, gateway.url + path, headers[name])
                    for _ in range(runs):  # interleaved, so drift on a shared machine hits both alike
                        for name, gateway in gateways.items():
                            times[name].append(timed(http, gateway.url + path, headers[name]))
                    medians = {name: statistics.median(values) for name, values in times.items()}
                    for name, median in medians.items():
                        print(f"GET /predictions/{{id}} {name:>9}: median {median:.2f} ms (n={runs})")
                    print(f"ratio tokens / auth off {medians['tokens'] / medians['auth off']:.2f}")

                    with client.store.connection() as conn:  # started rows, as a busy farm's table has them
                        conn.execute(
                            "INSERT INTO hv_farm_predictions (id, input, status, started_at, completed_at, created_at) "
                            "SELECT 'bench-' || n, '{}', 'succeeded', now() - (n %% 600) * interval '1 second', now(), "
                            "now() - (n %% 600) * interval '1 second' - (n %% 97) * interval '1 second' "
                            "FROM generate_series(1, %s) AS n", (rows,))
                    scrapes = [timed(http, gateways["tokens"].url + "/metrics", {}) for _ in range(max(3, runs // 20))]
                    print(f"GET /metrics with {rows} started rows: median {statistics.median(scrapes):.1f} ms "
                          f"(n={len(scrapes)})")
            finally:
                for gateway in gateways.values():
                    gateway.stop()


if __name__ == "__main__":
    main(*(int(arg) for arg in sys.argv[1:3]))
