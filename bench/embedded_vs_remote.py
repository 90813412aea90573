"""Embedded ComfyUI against ComfyUI as a subprocess server, in one run: same graph, same ComfyUI.

(a)  embedded: a worker process boots ComfyUI in-process (EmbeddedRuntime) and runs the graph.
(b)  remote:   the script starts ComfyUI's own main.py as a server (as cog-comfyui and worker-comfyui
               do) and a worker process drives it with RemoteRuntime (/prompt, /ws, /history, /view).
(b2) poll:     the same server, driven the plainer way: POST /prompt, poll /history every 250 ms
               (worker-comfyui's default interval), download from /view.
(b3) stock:    time to READY only, of the server with ComfyUI's default flags (API nodes loaded, as
               the wrappers start it); (b) runs with the embedded runtime's node set.
Each side boots --rounds times, alternating the order; the medians are reported.

Time to READY: from spawning the process(es) to the worker able to serve (interpreter start included).
Overhead per prediction: the worker's wall time for one run minus ComfyUI's own execution time
(embedded: the executor's time; remote: execution_start -> execution_success in /history).
Peak RSS: VmHWM of the worker, plus the server's for (b).
    .venv/bin/python bench/embedded_vs_remote.py [runs]      (make bench runs=N)
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from harness import ROOT

from comfy_runtime.graph.workflow import load_workflow
from comfy_runtime.settings import Settings
from comfy_runtime.supply.comfyui_source import resolve_comfyui_path
from local_servers.comfyui_server import ComfyUIServer

POLL_SECONDS = 0.25
TARGETS = {"ready": 0.5, "overhead": 0.1, "embedded_overhead_ms": 20.0}


def graph_for(index: int) -> dict[str, Any]:
    # A new seed and prefix per run: ComfyUI's cache would otherwise skip the unchanged nodes.
    return load_workflow("plumbing_video").render(
        {"width": 64, "height": 64, "num_frames": 9, "fps": 12, "seed": index}, filename_prefix=f"bench{index}"
    )


def peak_rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmHWM for pid {pid}")


def emit(**message: Any) -> None:
    print(json.dumps(message), flush=True)


# -- workers (child processes) -------------------------------------------------------------------
def series(run, runs: int, out_root: Path) -> list[tuple[float, float]]:
    samples = []
    for index in range(runs + 1):
        graph = graph_for(index)
        started = time.perf_counter()
        files, comfy_seconds = run(graph, out_root / str(index))
        wall = time.perf_counter() - started
        assert files and all(path.is_file() for path in files), f"run {index} saved nothing"
        samples.append((wall, comfy_seconds))
    return samples[1:]  # the first run warms ComfyUI's node caches and the codecs


def embedded_worker(args: argparse.Namespace) -> None:
    from comfy_runtime.backends.boot_plan import classes_of
    from comfy_runtime.backends.embedded import EmbeddedRuntime

    # As the product boots it (HV_BOOT, default lean: the plumbing graph's node modules only; boot_lean_vs_full.py).
    rt = EmbeddedRuntime(Path(args.comfyui), Path(args.work) / "models", Path(args.work) / "embedded", device="cpu",
                         boot=os.environ.get("HV_BOOT", "lean"))
    rt.require_node_classes(classes_of([graph_for(0)]))
    rt.start()
    emit(event="ready")

    def run(graph, out):
        result = rt.run(graph, out)
        return result.files, result.execution_seconds

    samples = series(run, args.runs, Path(args.work) / "embedded-out")
    emit(event="done", samples={"embedded": samples}, peak_rss=peak_rss_bytes(os.getpid()))


def remote_worker(args: argparse.Namespace) -> None:
    from comfy_runtime.backends.remote import RemoteRuntime

    rt = RemoteRuntime(args.url, startup_timeout=600)
    rt.start()
    emit(event="ready")
    if args.runs == 0:  # a time-to-READY probe only
        emit(event="done", samples={}, peak_rss=peak_rss_bytes(os.getpid()))
        return

    def run(graph, out):
        result = rt.run(graph, out)
        return result.files, result.execution_seconds

    samples = {"remote": series(run, args.runs, Path(args.work) / "remote-out")}
    peak = peak_rss_bytes(os.getpid())
    samples["poll"] = series(lambda graph, out: poll_run(rt, graph, out), args.runs, Path(args.work) / "poll-out")
    emit(event="done", samples=samples, peak_rss=peak)


def poll_run(rt, graph: dict[str, Any], out: Path) -> tuple[list[Path], float]:
    """The plain wrapper way: submit, poll /history at a fixed interval, download what it lists."""
    from comfy_runtime.backends.outputs import collect_output_files
    from comfy_runtime.backends.remote import execution_seconds_of

    http = rt._http
    prompt_id = http.post("/prompt", json={"prompt": graph}).raise_for_status().json()["prompt_id"]
    while True:
        time.sleep(POLL_SECONDS)
        entry = http.get(f"/history/{prompt_id}").raise_for_status().json().get(prompt_id)
        if entry is not None:
            break
    out.mkdir(parents=True, exist_ok=True)
    rt._download_outputs(entry["outputs"], {"output": out.resolve()})
    messages = dict(entry["status"]["messages"])
    return collect_output_files(entry["outputs"], {"output": out}), execution_seconds_of(messages)


# -- the orchestrating parent --------------------------------------------------------------------
def spawn_worker(role: str, work: Path, runs: int, comfyui: Path, url: str = "") -> subprocess.Popen:
    command = [sys.executable, __file__, "--worker", role, "--work", str(work), "--runs", str(runs),
               "--comfyui", str(comfyui), "--url", url]
    log = (work / f"{role}-worker.log").open("wb")
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True, cwd=ROOT)


def read_event(process: subprocess.Popen, wanted: str, log: Path) -> dict[str, Any]:
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("{"):
            message = json.loads(line)
            if message.get("event") == wanted:
                return message
    raise RuntimeError(f"worker ended before '{wanted}'; its log:\n{log.read_text(errors='replace')[-4000:]}")


def p90(values: list[float]) -> float:
    """The 90th percentile, interpolated between samples (never below the median, whatever n is)."""
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=10, method="inclusive")[8]


def summary(samples: list[list[float]]) -> dict[str, float]:
    overheads = [wall - comfy for wall, comfy in samples]
    return {
        "overhead_ms": statistics.median(overheads) * 1000,
        "overhead_p90_ms": p90(overheads) * 1000,
        "n": len(overheads),
        "wall_ms": statistics.median(wall for wall, _ in samples) * 1000,
        "comfy_ms": statistics.median(comfy for _, comfy in samples) * 1000,
    }


def boot_embedded(work: Path, runs: int, comfyui: Path) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    worker = spawn_worker("embedded", work, runs, comfyui)
    read_event(worker, "ready", work / "embedded-worker.log")
    ready = time.perf_counter() - started
    done = read_event(worker, "done", work / "embedded-worker.log")
    worker.wait(timeout=60)
    return ready, done


def boot_remote(work: Path, runs: int, comfyui: Path, stock: bool = False) -> tuple[float, dict[str, Any], int]:
    server = ComfyUIServer(comfyui, work / "models", work / ("server-stock" if stock else "server"), stock_flags=stock)
    started = time.perf_counter()
    server.start()
    try:
        worker = spawn_worker("remote", work, 0 if stock else runs, comfyui, server.url)
        read_event(worker, "ready", work / "remote-worker.log")
        ready = time.perf_counter() - started
        done = read_event(worker, "done", work / "remote-worker.log")
        server_rss = peak_rss_bytes(server.process.pid)
        worker.wait(timeout=60)
    finally:
        server.stop()
    return ready, done, server_rss


def main(runs: int, rounds: int) -> None:
    comfyui = resolve_comfyui_path(Settings())
    load_before = os.getloadavg()[0]
    ready_a, ready_b, ready_stock, samples_a, samples_b, samples_poll = [], [], [], [], [], []
    rss_a = rss_b = rss_server = rss_client = 0
    with tempfile.TemporaryDirectory(prefix="hv-bench-") as tmp:
        work = Path(tmp)
        (work / "models").mkdir()
        for round_ in range(rounds):
            # Alternate the order, so that neither side always boots with warmer OS file caches.
            order = ("a", "b", "stock") if round_ % 2 == 0 else ("stock", "b", "a")
            for side in order:
                if side == "a":
                    ready, done = boot_embedded(work, runs, comfyui)
                    ready_a.append(ready)
                    samples_a += done["samples"]["embedded"]
                    rss_a = max(rss_a, done["peak_rss"])
                elif side == "b":
                    ready, done, server_rss = boot_remote(work, runs, comfyui)
                    ready_b.append(ready)
                    samples_b += done["samples"]["remote"]
                    samples_poll += done["samples"]["poll"]
                    if server_rss + done["peak_rss"] > rss_b:
                        rss_b, rss_server, rss_client = server_rss + done["peak_rss"], server_rss, done["peak_rss"]
                else:
                    ready_stock.append(boot_remote(work, runs, comfyui, stock=True)[0])
            print(f"round {round_ + 1}/{rounds}: ready a {ready_a[-1]:.2f} s, b {ready_b[-1]:.2f} s, "
                  f"stock {ready_stock[-1]:.2f} s", flush=True)
    report(runs, rounds, load_before, statistics.median(ready_a), statistics.median(ready_b),
           statistics.median(ready_stock), summary(samples_a), summary(samples_b), summary(samples_poll),
           rss_a, rss_b, rss_server, rss_client)


def report(runs, rounds, load_before, ready_a, ready_b, ready_stock, a, b, poll, rss_a, rss_b, rss_server, rss_client) -> None:
    mib = 1024 * 1024
    print(f"\nembedded vs remote ComfyUI 0.3.75, plumbing graph (64x64, 9 frames): {rounds} boots of each, "
          f"{runs} predictions per boot after 1 warm-up (medians)")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, CPU only; "
          f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; load average {load_before:.1f} -> {os.getloadavg()[0]:.1f}\n")
    print(f"{'':38}{'(a) embedded':>13}{'(b) remote ws':>14}{'a/b':>7}{'(b2) poll':>11}{'a/b2':>7}")
    print(f"{'time to READY, s':38}{ready_a:13.2f}{ready_b:14.2f}{ready_a / ready_b:7.2f}{'':>11}{'':>7}")
    print(f"{'  server with stock flags (API nodes)':38}{'':13}{ready_stock:14.2f}{ready_a / ready_stock:7.2f}")
    rows = (("overhead_ms", "overhead per prediction, ms"), ("overhead_p90_ms", f"  overhead p90 (n={a['n']} per side), ms"),
            ("comfy_ms", "ComfyUI's own execution, ms"), ("wall_ms", "wall per prediction, ms"))
    for key, label in rows:
        print(f"{label:38}{a[key]:13.1f}{b[key]:14.1f}{a[key] / b[key]:7.3f}{poll[key]:11.1f}{a[key] / poll[key]:7.3f}")
    print(f"{'peak RSS, MiB':38}{rss_a / mib:13.0f}{rss_b / mib:14.0f}{rss_a / rss_b:7.2f}")
    print(f"{'':38}{'':13}  (server {rss_server / mib:.0f} + worker {rss_client / mib:.0f})")
    print("\ntargets:")
    checks = [
        (f"time to READY embedded/remote <= {TARGETS['ready']}", ready_a / ready_b <= TARGETS["ready"], f"{ready_a / ready_b:.2f}"),
        (f"overhead embedded/remote(ws) <= {TARGETS['overhead']}", a["overhead_ms"] / b["overhead_ms"] <= TARGETS["overhead"],
         f"{a['overhead_ms'] / b['overhead_ms']:.3f}"),
        (f"overhead embedded/remote(poll) <= {TARGETS['overhead']}",
         a["overhead_ms"] / poll["overhead_ms"] <= TARGETS["overhead"], f"{a['overhead_ms'] / poll['overhead_ms']:.3f}"),
        (f"embedded overhead < {TARGETS['embedded_overhead_ms']:g} ms", a["overhead_ms"] < TARGETS["embedded_overhead_ms"],
         f"{a['overhead_ms']:.1f} ms"),
    ]
    for label, ok, value in checks:
        print(f"  {'met    ' if ok else 'NOT met'}  {label}: {value}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="?", type=int, default=20, help="predictions per boot")
    parser.add_argument("--rounds", type=int, default=3, help="boots of each side, alternating the order")
    parser.add_argument("--worker", choices=["embedded", "remote"])
    parser.add_argument("--work", default="")
    parser.add_argument("--runs", dest="worker_runs", type=int, default=20)
    parser.add_argument("--comfyui", default="")
    parser.add_argument("--url", default="")
    arguments = parser.parse_args()
    if arguments.worker:
        arguments.runs = arguments.worker_runs
        {"embedded": embedded_worker, "remote": remote_worker}[arguments.worker](arguments)
    else:
        main(arguments.runs, arguments.rounds)
