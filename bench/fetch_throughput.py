"""Weights supply chain figures: parallel ranged fetch vs one stream, and the boot-time check's cost.

1. Throughput: a Range-capable file server (bench/harness.py) serves a file from ANOTHER process on
   127.0.0.1; the same file is fetched by comfy_runtime.supply.download.fetch with N connections and, as the baseline in the same run, by a
   single httpx GET stream. Both write to disk and sha256 the result (fetch does that before the rename).
   Run twice: unthrottled loopback, and with each connection capped (a per-chunk delay in the server, the
   way CDNs cap a connection), which is what parallel ranges are for.
2. Boot check: on one file, a full sha256 (what `weights verify` and a first boot do) vs the cheap check
   (stat + record + sampled digest), warm page cache and, where the kernel honours posix_fadvise
   DONTNEED, cold. Reported per GiB and extrapolated to the ~35 GB of HunyuanVideo weights (4 files).

    .venv/bin/python bench/fetch_throughput.py [MiB to fetch] [MiB for the check] [connections]
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx
from harness import ROOT, machine_line, range_server_process

from comfy_runtime.supply.digest import sha256_of
from comfy_runtime.supply.download import fetch
from comfy_runtime.supply.manifest import WeightEntry
from comfy_runtime.supply.weights import check_file

HUNYUAN_BYTES = 25.6e9 + 0.246e9 + 9.1e9 + 0.493e9
HUNYUAN_FILES = 4


def write_random(path: Path, mib: int) -> str:
    digest = hashlib.sha256()
    block = os.urandom(1 << 20)
    with path.open("wb") as handle:
        for i in range(mib):
            chunk = bytes([i & 0xFF]) + block[1:]
            handle.write(chunk)
            digest.update(chunk)
    return digest.hexdigest()


def drop_cache(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            os.fsync(handle.fileno())
            os.posix_fadvise(handle.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        return True
    except (OSError, AttributeError):
        return False


def single_stream(url: str, dest: Path) -> float:
    started = time.perf_counter()
    with httpx.Client(timeout=120) as client, client.stream("GET", url) as response, dest.open("wb") as handle:
        response.raise_for_status()
        for data in response.iter_bytes(1 << 20):
            handle.write(data)
    sha256_of(dest)
    return time.perf_counter() - started


def throughput(served: Path, name: str, size: int, digest: str, connections: int, delay: float, out: Path) -> None:
    with range_server_process(served, delay) as base_url:
        url = f"{base_url}/{name}"
        single_s, parallel_s = [], []
        for _ in range(2):  # alternate, so neither one always gets the warmer cache
            dest = out / "single.bin"
            single_s.append(single_stream(url, dest))
            dest.unlink()
            dest = out / "parallel.bin"
            started = time.perf_counter()
            fetch(url, dest, size=size, sha256=digest, connections=connections, progress=False, use_pget=False)
            parallel_s.append(time.perf_counter() - started)
            dest.unlink()
            Path(str(dest) + ".lock").unlink(missing_ok=True)
        single, parallel = min(single_s), min(parallel_s)
        label = "unthrottled loopback" if not delay else f"each connection capped at ~{65536 / delay / 1e6:.0f} MB/s"
        print(f"fetch {size / 2**20:.0f} MiB, {label}:")
        print(f"  single stream     {size / single / 2**20:8.1f} MiB/s  ({single:.2f} s)")
        print(f"  {connections} ranged conns  {size / parallel / 2**20:8.1f} MiB/s  ({parallel:.2f} s)")
        print(f"  ratio parallel/single: {single / parallel:.2f}x")


def boot_check(path: Path, size: int, digest: str) -> None:
    models = path.parent / "models"
    target = models / "vae" / "w.safetensors"
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(path, target)
    entry = WeightEntry(folder="vae", file="w.safetensors", size=size, sha256=digest, url="http://unused")
    gib = size / 2**30
    rows = []
    for cold in (False, True):
        if cold and not drop_cache(target):
            print("  (posix_fadvise unavailable: no cold-cache figures)")
            break
        started = time.perf_counter()
        assert check_file(models, entry, full=True) is None  # full sha256, writes the record
        full = time.perf_counter() - started
        if cold:
            drop_cache(target)
        started = time.perf_counter()
        assert check_file(models, entry) is None  # the cheap path
        cheap = time.perf_counter() - started
        rows.append(("cold" if cold else "warm", full, cheap))
    print(f"boot check on a {gib:.2f} GiB file:")
    for cache, full, cheap in rows:
        print(f"  {cache} cache: full sha256 {full / gib:6.2f} s/GiB; cheap check {cheap * 1000:7.1f} ms "
              f"({cheap / gib * 1000:.1f} ms/GiB at this size; it reads a fixed 4 MiB per file); ratio {full / cheap:,.0f}x")
        total_full = full / gib * HUNYUAN_BYTES / 2**30
        print(f"    ~35 GB of HunyuanVideo weights: full hash ~{total_full:.0f} s, cheap check ~{cheap * HUNYUAN_FILES:.2f} s")


def main(fetch_mib: int = 256, check_mib: int = 1024, connections: int = 8) -> None:
    print(machine_line(fetch_mib=fetch_mib, check_mib=check_mib, connections=connections))
    with tempfile.TemporaryDirectory(dir=ROOT / ".cache") as tmp:
        work = Path(tmp)
        served = work / "served"
        served.mkdir()
        digest = write_random(served / "weights.bin", fetch_mib)
        size = fetch_mib << 20
        throughput(served, "weights.bin", size, digest, connections, 0.0, work)
        throughput(served, "weights.bin", size, digest, connections, 0.004, work)
        (served / "weights.bin").unlink()
        check = work / "check.bin"
        boot_check(check, check_mib << 20, write_random(check, check_mib))


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
