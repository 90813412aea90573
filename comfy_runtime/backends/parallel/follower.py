"""`python -m comfy_runtime.backends.parallel.follower`: rank 1..N-1 of a multi-GPU deployment.

Started by rank 0 (backends/parallel/runtime.py), never by hand. It boots ComfyUI in-process from the same
settings, joins the group, then runs each graph rank 0 sends, answering one JSON line per run on its protocol
pipe (the stdout it was started with; ComfyUI's own prints go to stderr, with rank 0's log). The work waits for
jobs on that pipe, not in a collective, so an idle follower never meets the collective timeout.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

from comfy_runtime.backends.parallel.group import STOP, GroupAddress, join, leave


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="comfy_runtime.backends.parallel.follower")
    parser.add_argument("--rank", type=int, required=True)
    parser.add_argument("--world", type=int, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--timeout", type=float, required=True)
    parser.add_argument("--backend", default="gloo")
    parser.add_argument("--work-dir", type=Path, required=True)
    args = parser.parse_args(argv)

    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything printed from here on goes to the log, not into the protocol
    logging.basicConfig(level=logging.WARNING, format=f"rank {args.rank}: %(levelname)s %(message)s")

    def say(**message) -> None:
        protocol.write(json.dumps(message) + "\n")

    from comfy_runtime.backends.embedded import EmbeddedRuntime, _comfy
    from comfy_runtime.backends.parallel.node import register
    from comfy_runtime.errors import ExecutionInterrupted
    from comfy_runtime.settings import Settings
    from comfy_runtime.supply.comfyui_source import resolve_comfyui_path

    settings = Settings()
    runtime = EmbeddedRuntime(
        comfyui_path=resolve_comfyui_path(settings), models_dir=settings.models_dir, work_dir=args.work_dir,
        device=settings.device, extra_custom_nodes=settings.extra_custom_nodes, pinned_memory=settings.pinned_memory,
        attention=settings.attention,  # every rank runs the leader's kernel (HV_ATTENTION); boot: full, any graph
    )
    runtime.start()
    register(_comfy().nodes.NODE_CLASS_MAPPINGS)
    say(booted=args.rank)
    join(GroupAddress(args.port, args.world, args.timeout, args.backend), args.rank)
    try:
        for line in sys.stdin:
            message = json.loads(line)
            if message.get("stop"):
                break
            output_dir = Path(tempfile.mkdtemp(prefix=f"rank{args.rank}-", dir=args.work_dir))
            STOP.clear()
            try:
                # No time limit of its own: rank 0's limit stops every rank at the same step, through the agreement.
                runtime.run(message["run"], output_dir)
                say(done=True)
            except ExecutionInterrupted:
                say(interrupted=True)
            except Exception as error:  # rank 0 reports it, rebuilds the group
                say(failed=f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}")
            finally:
                shutil.rmtree(output_dir, ignore_errors=True)
    finally:
        leave()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
