"""The container's memory limit, and how much host memory ComfyUI may pin under it.

ComfyUI 0.3.75 sizes its pinned (page-locked) host memory when comfy.model_management is imported:
`MAX_PINNED_MEMORY = 0.95 * psutil.virtual_memory().total` on Linux with a CUDA or ROCm device (0.45 on
Windows; -1, i.e. none, on CPU or with --disable-pinned-memory). psutil reports the *node's* RAM, not the
container's cgroup limit, so a 96 GiB pod on a 1 TB node lets ComfyUI lock ~950 GiB worth of offloaded
weights: the kernel then OOM-kills the pod while it loads them. pin_memory() reads the module global at
every call, so lowering it after import is enough. The executor runs ComfyUI's CLASSIC cache (no
RAM-pressure cache), so pinning is the one host-RAM budget ComfyUI sizes from total RAM here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

CGROUP_ROOT = Path("/sys/fs/cgroup")
SELF_CGROUP = Path("/proc/self/cgroup")
# cgroup v1 reports "no limit" as the largest page-aligned 64-bit value (9223372036854771712), not a word.
V1_UNLIMITED = 1 << 62
# Under a limit, the same process also holds torch, the models it does not pin, the text encoders when they
# are offloaded, and the decoded frames: half the limit leaves that room (ComfyUI's own rule takes 95%).
AUTO_FRACTION = 0.5
GIB = 1 << 30
@dataclass(frozen=True)
class MemoryLimit:
    bytes: int
    source: str  # the file it was read from


def container_memory_limit(root: Path = CGROUP_ROOT, self_cgroup: Path = SELF_CGROUP) -> MemoryLimit | None:
    """The tightest memory limit over this process's cgroup and its ancestors: cgroup v2's memory.max, else
    cgroup v1's memory.limit_in_bytes. None when there is none (or no cgroup filesystem to read)."""
    memberships = _memberships(self_cgroup)
    if (root / "cgroup.controllers").is_file():  # v2: one unified hierarchy
        return _tightest(root, memberships.get("", "/"), "memory.max")
    v1_root = root / "memory"
    if v1_root.is_dir():
        return _tightest(v1_root, memberships.get("memory", "/"), "memory.limit_in_bytes")
    return None


def _memberships(self_cgroup: Path) -> dict[str, str]:
    """Controller -> cgroup path, from /proc/self/cgroup ("0::/path" for v2, "4:memory:/path" for v1)."""
    try:
        lines = self_cgroup.read_text().splitlines()
    except OSError:
        return {}
    found: dict[str, str] = {}
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) == 3:
            for controller in parts[1].split(",") if parts[1] else [""]:
                found[controller] = parts[2]
    return found


def _tightest(root: Path, cgroup: str, name: str) -> MemoryLimit | None:
    # Inside a container's cgroup namespace the process sits at "/" and the root file is its own limit; on a
    # host the path names the nested cgroup, and any ancestor's limit binds it too.
    folder = root / cgroup.strip("/")
    candidates = [folder, *folder.parents] if cgroup.strip("/") else [root]
    best: MemoryLimit | None = None
    for candidate in candidates:
        if candidate != root and root not in candidate.parents:
            break
        value = _read_limit(candidate / name)
        if value is not None and (best is None or value < best.bytes):
            best = MemoryLimit(value, str(candidate / name))
        if candidate == root:
            break
    return best


def _read_limit(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if not text.isdigit():  # "max" (v2), or anything unreadable
        return None
    value = int(text)
    return None if value >= V1_UNLIMITED else value


@dataclass(frozen=True)
class PinnedMemoryDecision:
    max_pinned: float  # the value for ComfyUI's MAX_PINNED_MEMORY: bytes, or -1 for no pinning
    line: str  # the one boot log line that says what was decided and why


def decide_pinned_memory(
    setting: str | int, limit: MemoryLimit | None, host_ram: int, comfyui_max_pinned: float
) -> PinnedMemoryDecision:
    """comfyui_max_pinned is what ComfyUI computed at import (-1 where it does not pin at all)."""
    seen = f"container limit {_gib(limit.bytes)} ({limit.source})" if limit else "no container memory limit"
    seen += f", host RAM {_gib(host_ram)}"
    ours = f"ComfyUI's own rule: {_gib(comfyui_max_pinned)}"
    if comfyui_max_pinned <= 0:
        return PinnedMemoryDecision(comfyui_max_pinned, f"host memory: {seen}; pinned memory: not used (CPU device)")
    if setting == "off":
        return PinnedMemoryDecision(-1, f"host memory: {seen}; pinned memory: off (HV_PINNED_MEMORY=off; {ours})")
    if isinstance(setting, int):
        return PinnedMemoryDecision(
            setting, f"host memory: {seen}; pinned memory: at most {_gib(setting)} (HV_PINNED_MEMORY; {ours})"
        )
    if limit is None or limit.bytes >= host_ram:
        return PinnedMemoryDecision(comfyui_max_pinned, f"host memory: {seen}; pinned memory: at most {_gib(comfyui_max_pinned)} (ComfyUI's own rule, 95% of host RAM)")
    budget = min(float(int(limit.bytes * AUTO_FRACTION)), comfyui_max_pinned)
    return PinnedMemoryDecision(
        budget, f"host memory: {seen}; pinned memory: at most {_gib(budget)}, half the container limit "
        f"({ours}; set HV_PINNED_MEMORY to change it)",
    )


def apply_pinned_memory(decision: PinnedMemoryDecision, modules: list[Any]) -> None:
    for module in modules:
        module.MAX_PINNED_MEMORY = decision.max_pinned


def _gib(value: float) -> str:
    return f"{value / GIB:.1f} GiB" if value >= GIB else f"{value / (1 << 20):.0f} MiB"
