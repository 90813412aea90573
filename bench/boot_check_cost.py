"""What the boot-time weight check costs for the real pinned files: one sparse file per weights.manifest entry,
of the pinned size, with a verification record, then the check setup runs (comfy_runtime.supply.weights.check_file)
timed over several rounds.

Honest for the sampled check's CPU and syscall cost, which depends on the file's size only through where its 64
blocks sit: it reads 64 x 64 KiB = 4 MiB per file wherever the file is, and hashes them. A sparse file's holes read
as zeros without touching a disk, so this is the warm-page-cache cost; on a cold disk add 64 random reads per file
(see bench/fetch_throughput.py's cold figure, measured on real bytes). Not honest for the full sha256 a first boot
or `weights verify` does, whose cost is reading every byte: that one is given per GiB by bench/fetch_throughput.py.

    .venv/bin/python bench/boot_check_cost.py [rounds]
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from comfy_runtime.supply.manifest import load_manifest  # noqa: E402
from comfy_runtime.supply.weights import SAMPLE_BYTES, SAMPLES, check_file, write_record  # noqa: E402


def main(rounds: int) -> None:
    entries = [e for e in load_manifest() if e.pinned]
    with tempfile.TemporaryDirectory(dir=ROOT / ".cache") as scratch:
        models = Path(scratch)
        for entry in entries:
            path = models / entry.relative_path
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("wb") as handle:
                handle.truncate(entry.size)  # sparse: the pinned size, no blocks on disk
            write_record(models, entry, path, entry.sha256)  # as a full verification at fetch time leaves it
        allocated = sum((models / e.relative_path).stat().st_blocks * 512 for e in entries)
        print(f"{len(entries)} files, {sum(e.size for e in entries) / 1e9:.2f} GB pinned, "
              f"{allocated / (1 << 20):.1f} MiB allocated on disk; {SAMPLES} samples x {SAMPLE_BYTES >> 10} KiB per file; "
              f"{os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d')}")
        per_file: dict[str, list[float]] = {e.file: [] for e in entries}
        totals = []
        for _ in range(rounds):
            started = time.perf_counter()
            for entry in entries:
                t0 = time.perf_counter()
                problem = check_file(models, entry)
                per_file[entry.file].append(time.perf_counter() - t0)
                assert problem is None, problem
            totals.append(time.perf_counter() - started)
        for entry in entries:
            times = per_file[entry.file]
            print(f"  {entry.file:45s} {entry.size / 1e9:6.2f} GB  median {statistics.median(times) * 1e3:6.2f} ms")
        print(f"all {len(entries)} files: median {statistics.median(totals) * 1e3:.2f} ms, "
              f"max {max(totals) * 1e3:.2f} ms over {rounds} rounds")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20)
