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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil  # noqa: E402

from tests.soak_figures import SoakSample, call_predict, disk_bytes, format_samples, plumbing_env  # noqa: E402


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
        samples, walls = [], []
        for run in range(1, runs + 1):
            started = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):  # the per-prediction log lines Cog would capture
                path = call_predict(predictor, prompt="soak", width=64, height=64, num_frames=9, steps=1, fps=8, seed=run)
            path.read_bytes()
            walls.append(time.perf_counter() - started)
            samples.append(SoakSample(
                run=run, rss=process.memory_info().rss, output_bytes=disk_bytes(outputs, exclude=".work"),
                work_bytes=disk_bytes(outputs / ".work"), temp_bytes=disk_bytes(system_temp),
                run_folders=sum(1 for p in outputs.iterdir() if p.name != ".work"),
            ))
        print(format_samples(samples, every=max(10, runs // 15)))
        first, last = statistics.median(walls[:10]), statistics.median(walls[-10:])
        print(f"median wall per prediction: first 10 {first * 1000:.0f} ms, last 10 {last * 1000:.0f} ms, "
              f"ratio last/first {last / first:.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 300)
