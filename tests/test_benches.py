"""Every bench script runs at its smallest size and prints its figures, so a renamed helper fails here, not in
the hands of the next person who wants the figures. The figures themselves are not judged (they are for people,
measured on a quiet machine); what the lines say about the bench's own arithmetic is.

The GPU kit has its own test (tests/test_gpu_kit.py runs `python -m bench.gpu_kit --scale tiny`).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from local_servers import PROJECT_ROOT

BENCH = PROJECT_ROOT / "bench"
NOT_BENCHES = {"__init__.py", "harness.py"}  # harness: the benches' helpers

# script -> (smallest arguments, lines its output must have)
SMALLEST = {
    "boot_check_cost.py": (["1"], [r"^all \d+ files: median [\d.]+ ms"]),
    "boot_lean_vs_full.py": (["--rounds", "1"], [r"^time to READY, s +[\d.]+ +[\d.]+ +[\d.]+$",
                                                 r"^time to the first video, s +[\d.]+ +[\d.]+ +[\d.]+$",
                                                 r"READY lean/full <= 0\.5: [\d.]+$"]),
    "cache_levels.py": (["--sizes", "64x64x9", "--steps", "2", "--warm-size", "64x64x9", "--warm-steps", "2"],
                        [r"^ +64x64x9 +off +\d+ ", r"^ +64x64x9 +fastest +\d+ +\d+ +[\d.]+ +[\d.]+ +[\d.]+/255$",
                         r"HV_WARM_START=true .* first/second [\d.]+$"]),
    "cancel_latency.py": (["2", "0.05"], [r"^ratio cancel latency / step length +[\d.]+$"]),
    "cog_server_latency.py": (["2"], [r"^ratio HTTP round trip / ComfyUI execution +[\d.]+$"]),
    "embedded_vs_remote.py": (["2", "--rounds", "1"], [r"^  overhead p90 \(n=2 per side\)",
                                                       r"embedded overhead < [\d.]+ ms: [\d.]+ ms$"]),
    "farm_auth_overhead.py": (["5", "100"], [r"^ratio tokens / auth off +[\d.]+$",
                                            r"^GET /metrics with 100 started rows: median [\d.]+ ms"]),
    "farm_list_figures.py": (["5000", "2"], [r"^member, behind a cursor +[\d.]+ +[\d.]+ +[\d.]+$",
                                           r"^ratio no index / indexed, .+ [\d.]+$"]),
    "farm_overhead.py": (["1"], [r"^ratio farm end to end / direct Cog POST +[\d.]+$",
                                 r"^ratio 2 workers / 1 worker +[\d.]+$"]),
    "fault_figures.py": ([], [r"^baseline: median successful prediction \d+ ms", r"^failing node +NodeExecutionError "]),
    "fetch_throughput.py": (["8", "8", "2"], [r"ratio parallel/single: [\d.]+x", r"cheap check .* ratio \d+x"]),
    "hf_hub_evaluation.py": ([], [r"^resume after a kill +comfy_runtime +pass: ",
                                  r"^sha256 before the final name +comfy_runtime +pass",
                                  r"^token only to Hugging Face +comfy_runtime +pass: "]),
    "preview_cost.py": (["--size", "64x64x5", "--steps", "2", "--repeats", "1"],
                        [r"^tiny v1 64x64x5 x 2 steps: .* ratio preview / step [\d.]+$",
                         r"^720p x 129 HunyuanVideo15 +preview \d+ ms .* ratio preview / H100 v1 step \(38\.1 s\) [\d.]+;"]),
    "savevideo_replaced.py": (["1", "64x64x9"], [r"ratio a/b [\d.]+$", r"ratio a/c [\d.]+$"]),
    "sequence_parallel_figures.py": ([], [r"^HunyuanVideo 1\.5 .* +8 +[\d.]+ +[\d.]+ +[\d.]+x"]),
    "soak_figures.py": (["3"], [r"^ +3 +[\d.]+ ", r"^median wall per prediction: first 1 \d+ ms, last 1 \d+ ms, ratio"]),
    "upload_throughput.py": (["1"], [r"^video-sized .* ratio upload / copy +[\d.]+$",
                                     r"^large .* ratio upload / copy +[\d.]+$"]),
}


def p90_not_below_the_median(output: str) -> None:
    """make bench's p90 came out below the median for small n (an index into the sorted list, rounded down)."""
    median = re.search(r"^overhead per prediction, ms +([\d.]+) +([\d.]+) +[\d.]+ +([\d.]+)", output, re.MULTILINE)
    p90 = re.search(r"^  overhead p90 \(n=\d+ per side\), ms +([\d.]+) +([\d.]+) +[\d.]+ +([\d.]+)", output, re.MULTILINE)
    assert median and p90, output
    for side, (middle, high) in enumerate(zip(median.groups(), p90.groups(), strict=True)):
        assert float(high) >= float(middle), f"side {side}: p90 {high} below the median {middle}:\n{output}"


def hf_resume_was_tested(output: str) -> None:
    """The resume check counts only when the kill landed mid-file and the second run fetched part of it."""
    line = re.search(r"^resume after a kill +comfy_runtime +pass: first run sent (\d+) B before the kill, "
                     r"the second fetched (\d+) of (\d+) B", output, re.MULTILINE)
    assert line, output
    first, again, size = (int(n) for n in line.groups())
    assert first < size and 0 < again < size, line.group(0)


CHECKS = {"embedded_vs_remote.py": p90_not_below_the_median, "hf_hub_evaluation.py": hf_resume_was_tested}


def run_bench(script: str, args: list[str]) -> str:
    done = subprocess.run([sys.executable, str(BENCH / script), *args], cwd=PROJECT_ROOT, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)})
    assert done.returncode == 0, f"{script} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def test_every_bench_script_has_a_smallest_size_here():
    scripts = {path.name for path in BENCH.glob("*.py")} - NOT_BENCHES
    assert scripts == set(SMALLEST), f"add new benches to SMALLEST, drop gone ones: {scripts ^ set(SMALLEST)}"


@pytest.mark.parametrize("script", sorted(SMALLEST))
def test_bench_runs_at_its_smallest_size(script):
    args, lines = SMALLEST[script]
    output = run_bench(script, args)
    for line in lines:
        assert re.search(line, output, re.MULTILINE), f"{script}: no line matching {line!r} in:\n{output}"
    CHECKS.get(script, lambda output: None)(output)
