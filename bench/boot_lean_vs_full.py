"""The lean boot (HV_BOOT=lean, the default) against today's full boot (HV_BOOT=full), in one run, same machine.

Each boot is a fresh process that sets up predict.py's Predictor on the plumbing workflow, as Cog does: time to
READY is from spawning it to setup() returning (interpreter start included); time to the first video adds the first
prediction. The two ways alternate, --rounds times each; medians are reported. The worker also times its phases:
torch's import, ComfyUI's modules (boot_comfyui), and the rest of setup (node modules, supply checks, validation).
The lean boot reads ComfyUI's modules compiled by `comfyui provision` (<tree>.bytecode/); full compiles them from
source, as every boot did before.
    .venv/bin/python bench/boot_lean_vs_full.py [--rounds N]        (make bench runs both benches)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import ROOT, machine_line, plumbing_env

TARGET = 0.5  # issue 25: READY at most half of today's
MODES = ("full", "lean")


def worker(work: Path) -> None:
    started = time.perf_counter()
    import torch  # noqa: F401

    torch_done = time.perf_counter()
    from comfy_runtime.backends.embedded import boot_comfyui
    from comfy_runtime.settings import Settings
    from comfy_runtime.supply.comfyui_source import resolve_comfyui_path

    settings = Settings()
    boot_comfyui(resolve_comfyui_path(settings).resolve(), settings.device, defer_imports=settings.boot == "lean")
    comfy_done = time.perf_counter()
    import predict

    predictor = predict.Predictor()
    predictor.setup()
    ready = time.perf_counter()
    print(json.dumps({"event": "ready"}), flush=True)
    predictor.predict(prompt="boot bench", width=64, height=64, num_frames=9, fps=12, seed=1)
    video = time.perf_counter()
    from comfy_runtime.backends import boot_plan

    runtime = predictor.service.model.runtime
    print(json.dumps({"event": "done", "phases": {"torch": torch_done - started, "comfy_modules": comfy_done - torch_done,
                                                   "setup_rest": ready - comfy_done, "first_run": video - ready},
                      "extra_files": len(runtime.boot_plan.extra_files) if runtime.boot_plan else None,
                      "deferred_still": boot_plan.deferred_now()}), flush=True)


def boot(mode: str, work: Path) -> dict:
    env = {**os.environ, **plumbing_env(work / mode), "HV_BOOT": mode, "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, __file__, "--worker", str(work / mode)], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=(work / f"{mode}.log").open("wb"), text=True)
    result: dict = {}
    assert process.stdout is not None
    for line in process.stdout:
        if not line.startswith("{"):
            continue
        message = json.loads(line)
        if message["event"] == "ready":
            result["ready"] = time.perf_counter() - started
        elif message["event"] == "done":
            result["first_video"] = time.perf_counter() - started
            result.update(message)
    if process.wait(timeout=120) != 0 or "first_video" not in result:
        raise RuntimeError(f"{mode} boot failed; its log:\n{(work / f'{mode}.log').read_text(errors='replace')[-4000:]}")
    return result


def main(rounds: int) -> None:
    load_before = os.getloadavg()[0]
    runs: dict[str, list[dict]] = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory(prefix="hv-boot-bench-") as tmp:
        for round_ in range(rounds):
            order = MODES if round_ % 2 == 0 else tuple(reversed(MODES))  # neither always finds warmer OS caches
            for mode in order:
                runs[mode].append(boot(mode, Path(tmp)))
            print(f"round {round_ + 1}/{rounds}: READY full {runs['full'][-1]['ready']:.2f} s, "
                  f"lean {runs['lean'][-1]['ready']:.2f} s", flush=True)

    def median(mode: str, key: str, phase: bool = False) -> float:
        return statistics.median(r["phases"][key] if phase else r[key] for r in runs[mode])

    print(f"\nboot: HV_BOOT=lean vs HV_BOOT=full (today's way), plumbing workflow, Predictor.setup() as Cog runs it; "
          f"{rounds} boots of each, alternating (medians)")
    print(machine_line(load=f"{load_before:.1f} -> {os.getloadavg()[0]:.1f}"))
    print(f"\n{'':34}{'full':>9}{'lean':>9}{'lean/full':>11}")
    rows = [("time to READY, s", "ready", False), ("time to the first video, s", "first_video", False),
            ("  torch import, s", "torch", True), ("  ComfyUI modules, s", "comfy_modules", True),
            ("  node modules + setup checks, s", "setup_rest", True), ("  first prediction, s", "first_run", True)]
    for label, key, phase in rows:
        full, lean = median("full", key, phase), median("lean", key, phase)
        print(f"{label:34}{full:9.2f}{lean:9.2f}{lean / full:11.2f}")
    from comfy_runtime.backends.boot_plan import bytecode_dir
    from comfy_runtime.settings import Settings
    from comfy_runtime.supply.comfyui_source import resolve_comfyui_path

    compiled = bytecode_dir(resolve_comfyui_path(Settings()))
    print(f"\nComfyUI's compiled modules ({compiled}): "
          + ("present, read by the lean boot" if compiled.is_dir() else
             "ABSENT: the lean boot compiled from source too; run `python -m comfy_runtime comfyui provision`"))
    lean_run = runs["lean"][-1]
    print(f"\nlean: {lean_run['extra_files']} comfy_extras modules started; still deferred after the first video: "
          f"{', '.join(lean_run['deferred_still']) or 'none'}")
    saved_ready = median("full", "ready") - median("lean", "ready")
    saved_video = median("full", "first_video") - median("lean", "first_video")
    print(f"seconds saved: READY {saved_ready:.2f}, first video {saved_video:.2f}")
    ratio = median("lean", "ready") / median("full", "ready")
    print(f"\ntarget: {'met    ' if ratio <= TARGET else 'NOT met'}  READY lean/full <= {TARGET}: {ratio:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="boots of each way, alternating the order")
    parser.add_argument("--worker", default="", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.worker:
        worker(Path(arguments.worker))
    else:
        main(arguments.rounds)
