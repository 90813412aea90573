"""Soak figures: N predictions in a row through predict.py's Predictor on the plumbing graph (64x64,
9 frames, in-process ComfyUI on this machine), printing RSS and disk (outputs, ComfyUI work folders,
the system temp folder) every 10 runs, and the ratio of the last 10 predictions' median wall time to
the first 10's (a slowdown over the run would show as a ratio above 1).
    .venv/bin/python bench/soak_figures.py [runs]
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil
from harness import machine_line, plumbing_env

from local_servers.in_process import call_predict

MIB = 2**20


def disk_bytes(root: Path, exclude: str | None = None) -> int:
    """Bytes of every file under root (0 when it does not exist), leaving out the top-level `exclude`."""
    if not root.exists():
        return 0
    return sum(path.stat().st_size for path in root.rglob("*")
               if path.is_file() and not (exclude and path.relative_to(root).parts[0] == exclude))


def main(runs: int = 300) -> None:
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        outputs, system_temp = root / "outputs", root / "tmp"
        system_temp.mkdir()
        os.environ.update(plumbing_env(root))
        tempfile.tempdir = str(system_temp)
        from predict import Predictor

        predictor = Predictor()
        predictor.setup()
        process = psutil.Process()
        rows, walls = [], []
        every = max(10, runs // 15)
        for run in range(1, runs + 1):
            started = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):  # the per-prediction log lines Cog would capture
                path = call_predict(predictor, prompt="soak", width=64, height=64, num_frames=9, steps=1, fps=8, seed=run)
            path.read_bytes()
            walls.append(time.perf_counter() - started)
            rows.append((run, process.memory_info().rss, disk_bytes(outputs, exclude=".work"),
                         disk_bytes(outputs / ".work"), disk_bytes(system_temp),
                         sum(1 for p in outputs.iterdir() if p.name != ".work")))
        print(machine_line(runs=runs))
        print(f"{'run':>5} {'RSS MiB':>9} {'outputs KiB':>12} {'work KiB':>9} {'tmp KiB':>8} {'folders':>8}")
        for run, rss, output_bytes, work_bytes, temp_bytes, folders in rows:
            if run == 1 or run % every == 0 or run == runs:
                print(f"{run:>5} {rss / MIB:>9.1f} {output_bytes / 1024:>12.1f} {work_bytes / 1024:>9.1f} "
                      f"{temp_bytes / 1024:>8.1f} {folders:>8}")
        first_rss, settled_rss, last_rss = rows[0][1], rows[min(9, len(rows) - 1)][1], rows[-1][1]
        print(f"RSS growth: run 1->{runs} {(last_rss - first_rss) / MIB:+.1f} MiB, "
              f"run {min(10, runs)}->{runs} {(last_rss - settled_rss) / MIB:+.1f} MiB; "
              f"peak outputs {max(row[2] for row in rows) / 1024:.1f} KiB")
        # The first and last tenth (at least one run, at most ten): with few runs the two halves stay apart.
        window = max(1, min(10, runs // 10 if runs >= 20 else runs // 2))
        first, last = statistics.median(walls[:window]), statistics.median(walls[-window:])
        print(f"median wall per prediction: first {window} {first * 1000:.0f} ms, last {window} {last * 1000:.0f} ms, "
              f"ratio last/first {last / first:.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 300)
