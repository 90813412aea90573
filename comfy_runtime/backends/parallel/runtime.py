"""HV_GPUS=N: the embedded runtime as rank 0 of N, each run split over all N ranks.

Rank 0 is this process, the one that owns the prediction; setup starts N-1 follower processes
(backends/parallel/follower.py), one per GPU, each booting ComfyUI in-process with the same models and nodes.
Per run, rank 0 sends the graph (with the split node on its model chain) to every follower over its stdin, all
ranks run it, and only rank 0's outputs are kept: it encodes and delivers. Followers decode too (the VAE runs
whole on each rank): their result is discarded, and rank 0 never waits for it beyond its own decode.

A follower that dies or hangs mid-run makes the others' next collective fail within HV_GPU_COLLECTIVE_TIMEOUT;
the prediction fails with one line, the group is rebuilt (every follower restarted), and the next run works.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from comfy_runtime.backends.contract import ProgressCallback, RunResult
from comfy_runtime.backends.embedded import EmbeddedRuntime, _comfy
from comfy_runtime.backends.parallel.group import STOP, GroupAddress, join, leave
from comfy_runtime.backends.parallel.node import register
from comfy_runtime.backends.parallel.ulysses import check_heads
from comfy_runtime.errors import ComfyRuntimeError, ExecutionInterrupted
from comfy_runtime.graph.model_chain import add_sequence_parallel
from comfy_runtime.graph.types import Graph

log = logging.getLogger(__name__)

BOOT_SECONDS = 600.0  # a follower's ComfyUI boot (imports and nodes; no weights load before the first run)


class GroupFailed(ComfyRuntimeError):
    """A rank of a multi-GPU run failed or vanished; the group has been rebuilt for the next run."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def refuse_gpu_count(gpus: int, device: str) -> None:
    """HV_GPUS larger than the GPUs this process sees. HV_DEVICE=cpu runs the ranks as CPU processes (gloo): the
    same split, proven equal to one rank in the tests, and no faster."""
    from comfy_runtime.backends.parallel.ulysses import SequenceParallelRefused

    if device == "cpu":
        return
    import torch

    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if gpus > visible:
        raise SequenceParallelRefused(
            f"HV_GPUS={gpus} but this process sees {visible} GPU(s): set HV_GPUS to at most {visible}, or give the "
            "pod more GPUs (nvidia.com/gpu in its resources; CUDA_VISIBLE_DEVICES)"
        )


class _Follower:
    """One follower process and the JSON lines it answers on its protocol pipe."""

    def __init__(self, rank: int, process: subprocess.Popen):
        self.rank = rank
        self.process = process
        self.lines: queue.Queue[dict[str, Any] | None] = queue.Queue()
        threading.Thread(target=self._read, name=f"rank-{rank}-reader", daemon=True).start()

    @classmethod
    def spawn(cls, rank: int, address: GroupAddress, work_dir: Path, env: dict[str, str]) -> _Follower:
        command = [sys.executable, "-m", "comfy_runtime.backends.parallel.follower", "--rank", str(rank),
                   "--work-dir", str(work_dir), *address.as_args()]
        # In rank 0's process group: whatever stops the server's group stops its followers too.
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True)
        return cls(rank, process)

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            try:
                self.lines.put(json.loads(line))
            except json.JSONDecodeError:
                continue
        self.lines.put(None)  # the pipe closed: the process is gone

    def send(self, message: dict[str, Any]) -> bool:
        try:
            assert self.process.stdin is not None
            self.process.stdin.write(json.dumps(message) + "\n")
            self.process.stdin.flush()
            return True
        except (BrokenPipeError, OSError):
            return False

    def answer(self, seconds: float) -> dict[str, Any]:
        try:
            message = self.lines.get(timeout=seconds)
        except queue.Empty:
            return {"failed": f"rank {self.rank} did not answer within {seconds:g} s"}
        if message is None:
            return {"failed": f"rank {self.rank} exited (status {self.process.wait()})"}
        return message

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if not self.alive():
            return
        self.send({"stop": True})
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


class ParallelRuntime(EmbeddedRuntime):
    def __init__(self, *args: Any, gpus: int, collective_timeout: float, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.gpus = gpus
        self.collective_timeout = collective_timeout
        self.followers: list[_Follower] = []

    @property
    def backend(self) -> str:
        return "gloo" if self.device == "cpu" else "nccl"

    def start(self) -> None:
        if self._started:
            return
        super().start()
        register(_comfy().nodes.NODE_CLASS_MAPPINGS)
        self._form_group()

    def _form_group(self) -> None:
        address = GroupAddress(_free_port(), self.gpus, self.collective_timeout, self.backend)
        self.followers = [
            _Follower.spawn(rank, address, self.work_dir.parent / f".work-rank{rank}", self._follower_env(rank))
            for rank in range(1, self.gpus)
        ]
        deadline = time.monotonic() + BOOT_SECONDS
        for follower in self.followers:  # booted: ComfyUI is up and it is about to join the group
            answer = follower.answer(max(1.0, deadline - time.monotonic()))
            if "booted" not in answer:
                self._stop_followers()
                raise GroupFailed(f"HV_GPUS={self.gpus}: follower rank {follower.rank} did not start: "
                                  f"{answer.get('failed', answer)}; its log is above")
        join(address, 0)
        log.info("%d GPUs in one group (%s): each DiT step is split over all of them", self.gpus, self.backend)

    def _follower_env(self, rank: int) -> dict[str, str]:
        env = dict(os.environ)
        if self.device != "cpu":
            # Its one GPU is its cuda:0: the rank-th of the GPUs this process sees (a pod may list them by UUID).
            visible = [d for d in env.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
            env["CUDA_VISIBLE_DEVICES"] = visible[rank] if rank < len(visible) else str(rank)
        return env

    def _stop_followers(self) -> None:
        for follower in self.followers:
            follower.stop()
        self.followers = []

    def rebuild(self) -> None:
        """Every follower restarted and the group formed anew; ComfyUI's cached outputs dropped, since a fresh
        follower has none and every rank must run the same nodes."""
        self._stop_followers()
        leave()
        self._on_thread(self._executor.reset).result()
        self._form_group()

    def validate(self, graph: Graph) -> None:
        """Also: every DiT the graph splits has heads the group can share (read from its file's header)."""
        super().validate(graph)
        folder_paths = _comfy().folder_paths
        for node in add_sequence_parallel(graph).values():
            if node.get("class_type") != "UNETLoader":
                continue
            path = folder_paths.get_full_path("diffusion_models", node["inputs"]["unet_name"])
            heads = dit_heads(Path(path)) if path else None
            if heads is not None:
                check_heads(heads, self.gpus)

    def upload_input(self, path: Path, name: str | None = None) -> str:
        safe = super().upload_input(path, name)
        for rank in range(1, self.gpus):
            target = self.work_dir.parent / f".work-rank{rank}" / "comfy-input"
            target.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target / safe)
        return safe

    def run(self, graph: Graph, output_dir: Path, on_progress: ProgressCallback | None = None,
            timeout: float | None = None) -> RunResult:
        self.start()
        if not all(follower.alive() for follower in self.followers):
            log.warning("a follower of the GPU group had exited: rebuilding the group before this run")
            self.rebuild()
        graph = add_sequence_parallel(graph)
        STOP.clear()
        sent = [follower.send({"run": graph}) for follower in self.followers]
        try:
            result = super().run(graph, output_dir, on_progress, timeout)
        except ExecutionInterrupted:
            self._settle(sent, failed_here=False)
            raise
        except BaseException as error:
            self._settle(sent, failed_here=True, cause=error)
            raise
        self._settle(sent, failed_here=False)
        return result

    def _settle(self, sent: list[bool], failed_here: bool, cause: BaseException | None = None) -> None:
        """Every follower's end of the run; a lost or failed rank (or a collective that failed here) rebuilds the
        group and fails the prediction with one line."""
        answers = [follower.answer(self.collective_timeout + 30) if ok else {"failed": "its pipe was closed"}
                   for follower, ok in zip(self.followers, sent, strict=True)]
        lost = [(follower.rank, answer["failed"]) for follower, answer in zip(self.followers, answers, strict=True)
                if "failed" in answer]
        if not lost and not (failed_here and _collective_failure(cause)):
            return
        self.rebuild()
        if lost:
            rank, why = lost[0]
            raise GroupFailed(f"GPU rank {rank} failed mid-render ({why}); the group of {self.gpus} was rebuilt: "
                              "submit the prediction again") from cause
        raise GroupFailed(f"a collective between the {self.gpus} GPUs failed ({cause}); the group was rebuilt: "
                          "submit the prediction again") from cause

    def interrupt(self) -> None:
        # Never ComfyUI's own flag: one rank stopping alone would leave the others waiting in a collective.
        STOP.request()

    def close(self) -> None:
        self._stop_followers()
        leave()
        super().close()


HEAD_DIM = 128  # ComfyUI's detection: num_heads = hidden_size // 128 for every HunyuanVideo DiT


def dit_heads(path: Path) -> int | None:
    """A HunyuanVideo DiT's attention heads from its safetensors header; None for a file that is not one."""
    import struct

    try:
        with open(path, "rb") as file:
            (length,) = struct.unpack("<Q", file.read(8))
            if length > 100 << 20:
                return None
            header = json.loads(file.read(length))
    except (OSError, ValueError, struct.error):
        return None
    for name, entry in header.items():
        if name.endswith("img_in.proj.weight") and isinstance(entry, dict):
            return int(entry["shape"][0]) // HEAD_DIM
    return None


def _collective_failure(error: BaseException | None) -> bool:
    text = f"{type(error).__name__}: {error}".lower()
    return any(word in text for word in ("gloo", "nccl", "connection closed", "timed out", "distributed"))
