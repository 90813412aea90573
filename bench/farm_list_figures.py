"""What a page of GET /predictions costs (the jobs page polls it every second), with and without its indexes.

A real PostgreSQL (initdb, 127.0.0.1), `rows` predictions spread over 50 tokens, then farm/listing.py's query
(the gateway's, in-process: no HTTP in the figure) for an admin (every row) and for one member, first page and a
page behind a cursor, `runs` times each: the median with the listing indexes of farm/schema.py (LISTING_DDL), then
the same with them dropped, and the ratio.
    .venv/bin/python bench/farm_list_figures.py [rows] [runs]
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import machine_line  # noqa: E402
from comfy_runtime.farm import tokens  # noqa: E402
from comfy_runtime.farm.listing import list_predictions  # noqa: E402
from comfy_runtime.farm.store import JobStore  # noqa: E402
from local_servers.postgres_server import PostgresServer  # noqa: E402

OWNERS = 50
CASES = (("admin, first page", None, False), ("admin, behind a cursor", None, True),
         ("member, first page", "t7", False), ("member, behind a cursor", "t7", True))


def measure(store: JobStore, rows: int, runs: int) -> dict[str, float]:
    medians = {}
    for label, owner, paged in CASES:
        viewer = tokens.Principal(name=owner, admin=owner is None)
        where, params = tokens.visible_to(viewer)
        before = f"p{rows // 4 - (rows // 4) % OWNERS + 7}" if paged else None  # one of t7's, a quarter in
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            results, _ = list_predictions(store, 20, before, where, params)
            times.append((time.perf_counter() - started) * 1000)
        assert len(results) == 20, (label, len(results))
        medians[label] = statistics.median(times)
    return medians


def main(rows: int = 100_000, runs: int = 20) -> None:
    print(machine_line(rows=rows, runs=runs))
    with PostgresServer() as pg:
        store = JobStore(pg.url).open()
        try:
            store.ensure_schema()
            with store.connection() as conn:
                for index in range(OWNERS):
                    tokens.create(conn, f"t{index}")
                conn.execute(
                    "INSERT INTO hv_farm_predictions (id, input, token_name, created_at) SELECT 'p' || g, "
                    f"'{{\"prompt\": \"bench\"}}', 't' || (g %% {OWNERS}), now() - g * interval '1 second' "
                    "FROM generate_series(1, %s) g", (rows,))
                conn.execute("ANALYZE hv_farm_predictions")
            indexed = measure(store, rows, runs)
            with store.connection() as conn:
                conn.execute("DROP INDEX hv_farm_predictions_created_idx")
                conn.execute("DROP INDEX hv_farm_predictions_owner_created_idx")
                conn.execute("ANALYZE hv_farm_predictions")
            bare = measure(store, rows, runs)
        finally:
            store.close()
    print(f"{'page of 20, ' + str(rows) + ' rows':<34} {'indexed ms':>10} {'no index ms':>12} {'ratio':>7}")
    for label, _, _ in CASES:
        print(f"{label:<34} {indexed[label]:>10.2f} {bare[label]:>12.2f} {bare[label] / indexed[label]:>7.1f}")
    worst = max(CASES, key=lambda case: bare[case[0]] / indexed[case[0]])[0]
    print(f"ratio no index / indexed, {worst} {bare[worst] / indexed[worst]:.1f}")


if __name__ == "__main__":
    main(*(int(arg) for arg in sys.argv[1:3]))
