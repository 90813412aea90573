"""Fault figures: inject each fault into a real in-process prediction (ComfyUI on the CPU, plumbing
graph, fixture nodes where the fault cannot happen on a CPU) and print, per fault, the error the
caller gets, how long it took to fail, the prediction folders left on disk, whether the next
prediction rendered a decodable video, and RSS before/after. Time to fail is set against the same
process's median successful prediction (a ratio), not against a fixed number.
    .venv/bin/python bench/fault_figures.py
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import logging
import os
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

import psutil
from harness import frame_count, machine_line, plumbing_env, plumbing_with

QUIET = lambda _line: None  # noqa: E731


def main() -> None:
    logging.basicConfig(level=logging.CRITICAL)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.update(plumbing_env(Path(tmp)))
        from cog import CancelationException

        import comfy_runtime.backends.embedded as embedded
        from comfy_runtime.graph.workflow import load_workflow
        from comfy_runtime.job.budget import MemoryBudget
        from comfy_runtime.job.limits import JobLimits
        from comfy_runtime.job.prompt import PromptTokenCounter
        from comfy_runtime.job.request import VideoRequest
        from comfy_runtime.render.served_model import ServedModel
        from comfy_runtime.service import VideoService
        from comfy_runtime.settings import Settings
        from comfy_runtime.supply.comfyui_source import resolve_comfyui_path

        settings = Settings()
        runtime = embedded.EmbeddedRuntime(resolve_comfyui_path(settings), settings.models_dir,
                                           settings.output_dir / ".work", "cpu", settings.extra_custom_nodes)
        runtime.start()
        tokens = PromptTokenCounter(resolve_comfyui_path(settings))
        root = Path(tmp) / "runs"
        request = VideoRequest(prompt="x", width=256, height=128, num_frames=13, fps=12, seed=3)
        slow = ("HVTestSlowSteps", {"steps": 400, "seconds_per_step": 0.05})

        def renderer(*nodes, budget=None, timeout=None):
            workflow = plumbing_with(*nodes) if nodes else None
            limits = JobLimits(budget or JobLimits.default().budget, tokens, timeout)
            return VideoService(ServedModel(runtime, workflow or load_workflow("plumbing_video"), root, limits))

        good = renderer()
        walls = []
        for _ in range(10):
            started = time.perf_counter()
            good.render(request, QUIET)
            walls.append(time.perf_counter() - started)
        shutil.rmtree(good.render(request, QUIET).run_dir)  # so `left` counts only what a fault leaves
        baseline = statistics.median(walls)

        def cancel_after(seconds):
            def run():
                target = threading.current_thread()
                timer = threading.Timer(seconds, lambda: ctypes.pythonapi.PyThreadState_SetAsyncExc(
                    ctypes.c_ulong(target.ident), ctypes.py_object(CancelationException)))
                timer.start()
                renderer(slow).render(request, QUIET)
            return run

        def deaf_timeout():
            embedded.INTERRUPT_GRACE_SECONDS, saved = 0.3, embedded.INTERRUPT_GRACE_SECONDS
            try:
                renderer(("HVTestSlowSteps", {"steps": 1, "seconds_per_step": 2.0}), timeout=0.5).render(request, QUIET)
            finally:
                embedded.INTERRUPT_GRACE_SECONDS = saved

        faults = [
            ("prompt: control character", lambda: renderer().render(VideoRequest(prompt="a\x00b"), QUIET)),
            ("prompt: 300 tokens", lambda: renderer().render(request.model_copy(update={"prompt": "cat " * 300}), QUIET)),
            ("over memory budget", lambda: renderer(budget=MemoryBudget(256 * 128 * 9, "set")).render(request, QUIET)),
            ("OOM in sampler (fixture)", lambda: renderer(("HVTestOutOfMemory", {"megabytes": 64})).render(request, QUIET)),
            ("OOM in decode (fixture)", lambda: renderer(("HVTestOutOfMemoryDecode", {"megabytes": 64})).render(request, QUIET)),
            ("time limit 1 s", lambda: renderer(slow, timeout=1.0).render(request, QUIET)),
            ("node deaf to interrupt", deaf_timeout),
            ("Cog cancel after 0.5 s", cancel_after(0.5)),
            ("failing node", lambda: renderer(("HVTestFail", {"message": "boom"})).render(request, QUIET)),
        ]
        process = psutil.Process()
        print(machine_line())
        print(f"baseline: median successful prediction {baseline * 1000:.0f} ms (256x128, 13 frames)")
        print(f"{'fault':<28} {'error':<22} {'fail s':>7} {'x base':>7} {'left':>5} {'next ok':>8} {'RSS MiB':>14}  message")
        for name, inject in faults:
            rss_before = process.memory_info().rss
            before = set(root.iterdir()) if root.exists() else set()
            started = time.perf_counter()
            error: BaseException | None = None
            try:
                with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                    inject()
            except BaseException as caught:  # noqa: B036 - the cancel is a BaseException on purpose
                error = caught
            failed_after = time.perf_counter() - started
            left = len((set(root.iterdir()) if root.exists() else set()) - before)  # folders the fault left
            while runtime._stuck is not None and not runtime._stuck.done():  # a deaf node: wait until it ends
                time.sleep(0.05)
            check = renderer()
            rendered = check.render(request, QUIET)
            next_ok = frame_count(rendered.video) == 13
            shutil.rmtree(rendered.run_dir)
            rss_after = process.memory_info().rss
            if hasattr(error, "errors"):  # pydantic: the rule's own message
                message = error.errors()[0]["msg"]
            else:
                message = (str(error).splitlines() or [f"({type(error).__name__})"])[0] if error else "(no error!)"
            message = message[:110]
            print(f"{name:<28} {type(error).__name__:<22} {failed_after:>7.2f} {failed_after / baseline:>7.1f} "
                  f"{left:>5} {str(next_ok):>8} {rss_before / 2**20:>6.0f}->{rss_after / 2**20:<6.0f}  {message}")


if __name__ == "__main__":
    main()
