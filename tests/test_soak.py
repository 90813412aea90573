"""100 predictions in a row through predict.py on the plumbing graph (64x64, 9 frames): output, temp
and work folders must not grow, and RSS must stay bounded. Asserts on growth, never on time; prints
the figures (pytest -s shows them)."""

import tempfile

import psutil
import pytest

from local_servers.in_process import call_predict
from tests.support.soak import SoakSample, disk_bytes, format_samples

RUNS = 100
# Allocator noise and ComfyUI's first-use caches settle in the first runs; after that a leak of even
# 0.4 MiB per prediction would cross this over the 90 measured runs.
RSS_GROWTH_LIMIT = 32 * 2**20

pytestmark = pytest.mark.soak


def test_100_predictions_leave_disk_flat_and_rss_bounded(hv_env, runtime, tmp_path, monkeypatch, capsys):
    from predict import Predictor

    outputs, system_temp = tmp_path / "outputs", tmp_path / "tmp"
    system_temp.mkdir()
    monkeypatch.setenv("HV_OUTPUT_DIR", str(outputs))
    monkeypatch.setattr(tempfile, "tempdir", str(system_temp))  # anything using tempfile lands where we look
    predictor = Predictor()
    predictor.setup()
    process = psutil.Process()
    samples: list[SoakSample] = []
    for run in range(1, RUNS + 1):
        path = call_predict(predictor, prompt="soak", width=64, height=64, num_frames=9, steps=1, fps=8, seed=run)
        assert path.read_bytes()[4:8] == b"ftyp"  # Cog takes the file: it must be whole
        run_folders = [p for p in outputs.iterdir() if p.name != ".work"]
        samples.append(SoakSample(
            run=run,
            rss=process.memory_info().rss,
            output_bytes=disk_bytes(outputs, exclude=".work"),
            work_bytes=disk_bytes(outputs / ".work"),
            temp_bytes=disk_bytes(system_temp),
            run_folders=len(run_folders),
        ))
        assert len(run_folders) == 1, f"run {run}: {len(run_folders)} prediction folders on disk"
    with capsys.disabled():
        print("\n" + format_samples(samples, every=10))

    settled, last = samples[9], samples[-1]
    assert last.rss - settled.rss < RSS_GROWTH_LIMIT, format_samples(samples, every=10)
    assert max(s.output_bytes for s in samples) <= 2 * samples[0].output_bytes  # one prediction's folder at most
    assert last.work_bytes <= samples[0].work_bytes and last.temp_bytes <= samples[0].temp_bytes
