"""The process group the ranks of one multi-GPU deployment share, and the per-step stop agreement.

A rank that stops on its own while the others wait in a collective would hang them until the collective
timeout: so a cancel never stops one rank alone. Each DiT step begins with one all-reduce of a stop flag, and
every rank raises ComfyUI's interrupt at that same step when any of them was asked to stop.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class GroupAddress:
    """Where the ranks meet: rank 0's TCP store on this machine (the followers are its child processes)."""

    port: int
    world: int
    timeout_seconds: float
    backend: str = "gloo"  # nccl on GPUs
    host: str = "127.0.0.1"

    def as_args(self) -> list[str]:
        return ["--port", str(self.port), "--world", str(self.world), "--timeout", f"{self.timeout_seconds:g}",
                "--backend", self.backend]


def join(address: GroupAddress, rank: int) -> None:
    """Join the group (blocks until every rank has joined, or the timeout passes)."""
    leave()
    dist.init_process_group(
        address.backend, init_method=f"tcp://{address.host}:{address.port}", rank=rank, world_size=address.world,
        timeout=timedelta(seconds=address.timeout_seconds),
    )


def leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


class StopAgreement:
    """A stop asked of any rank, agreed by all at the start of the next DiT step."""

    def __init__(self) -> None:
        self._requested = threading.Event()

    def request(self) -> None:
        self._requested.set()

    def clear(self) -> None:
        self._requested.clear()

    def agreed(self, device: torch.device) -> bool:
        flag = torch.tensor([1 if self._requested.is_set() else 0], dtype=torch.int32, device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())


STOP = StopAgreement()  # one per process, as ComfyUI's own interrupt flag is
