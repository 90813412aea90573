"""The container's memory limit (fake cgroup trees) and the pinned-memory budget the real ComfyUI then uses."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import psutil
import pytest
import torch
from pydantic import ValidationError

from comfy_runtime.backends.host_memory import (
    GIB,
    MemoryLimit,
    container_memory_limit,
    decide_pinned_memory,
)
from comfy_runtime.settings import Settings, parse_pinned_setting

TB = 1024 * GIB


def cgroup_tree(root: Path, files: dict[str, str], self_cgroup: str) -> Path:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
    proc = root / "proc-self-cgroup"
    proc.write_text(self_cgroup + "\n")
    return proc


def test_v2_takes_the_tightest_limit_over_the_process_cgroup_and_its_ancestors(tmp_path):
    proc = cgroup_tree(tmp_path, {
        "cgroup.controllers": "cpu memory",
        "memory.max": "max",
        "kubepods/pod1/memory.max": str(96 * GIB),
        "kubepods/pod1/ctr/memory.max": "max",
    }, "0::/kubepods/pod1/ctr")
    limit = container_memory_limit(tmp_path, proc)
    assert limit == MemoryLimit(96 * GIB, str(tmp_path / "kubepods/pod1/memory.max"))


def test_v2_inside_a_cgroup_namespace_reads_the_root_file(tmp_path):
    proc = cgroup_tree(tmp_path, {"cgroup.controllers": "memory", "memory.max": str(16 * GIB)}, "0::/")
    assert container_memory_limit(tmp_path, proc).bytes == 16 * GIB


def test_v2_max_everywhere_is_no_limit(tmp_path):
    proc = cgroup_tree(tmp_path, {"cgroup.controllers": "memory", "memory.max": "max", "a/memory.max": "max"}, "0::/a")
    assert container_memory_limit(tmp_path, proc) is None


def test_v1_reads_the_memory_controller_and_treats_its_huge_value_as_no_limit(tmp_path):
    proc = cgroup_tree(tmp_path, {
        "memory/memory.limit_in_bytes": "9223372036854771712",
        "memory/docker/abc/memory.limit_in_bytes": str(8 * GIB),
    }, "5:cpu,cpuacct:/docker/abc\n4:memory:/docker/abc\n0::/")
    assert container_memory_limit(tmp_path, proc) == MemoryLimit(
        8 * GIB, str(tmp_path / "memory/docker/abc/memory.limit_in_bytes"))
    (tmp_path / "memory/docker/abc/memory.limit_in_bytes").write_text("9223372036854771712\n")
    assert container_memory_limit(tmp_path, proc) is None


def test_no_cgroup_filesystem_is_no_limit(tmp_path):
    assert container_memory_limit(tmp_path / "absent", tmp_path / "absent-proc") is None


def test_a_96_gib_pod_on_a_1_tb_node_pins_half_its_limit_not_95_percent_of_the_node():
    comfy_own = 0.95 * TB  # what ComfyUI 0.3.75 computes on Linux with a GPU
    decision = decide_pinned_memory("auto", MemoryLimit(96 * GIB, "/sys/fs/cgroup/memory.max"), TB, comfy_own)
    assert decision.max_pinned == 48 * GIB
    assert "container limit 96.0 GiB (/sys/fs/cgroup/memory.max)" in decision.line
    assert "at most 48.0 GiB" in decision.line and "972.8 GiB" in decision.line  # ours and ComfyUI's


@pytest.mark.parametrize(("setting", "limit", "expected"), [
    ("off", MemoryLimit(96 * GIB, "x"), -1),
    (24 * GIB, MemoryLimit(96 * GIB, "x"), 24 * GIB),
    ("auto", None, 0.95 * TB),  # no limit: ComfyUI's own rule stands
    ("auto", MemoryLimit(2 * TB, "x"), 0.95 * TB),  # a limit above the RAM binds nothing
])
def test_the_setting_and_the_limit_decide_the_budget(setting, limit, expected):
    assert decide_pinned_memory(setting, limit, TB, 0.95 * TB).max_pinned == expected


def test_where_comfyui_does_not_pin_nothing_is_changed():
    decision = decide_pinned_memory(24 * GIB, MemoryLimit(96 * GIB, "x"), TB, -1)
    assert decision.max_pinned == -1 and "not used (CPU device)" in decision.line


@pytest.mark.parametrize(("text", "expected"), [
    ("auto", "auto"), ("OFF", "off"), ("24GiB", 24 * GIB), ("512MiB", 512 << 20), ("8G", 8 * GIB), ("1000", 1000),
])
def test_the_setting_forms(text, expected):
    assert parse_pinned_setting(text) == expected


def test_an_unreadable_setting_is_refused_naming_the_forms(monkeypatch):
    monkeypatch.setenv("HV_PINNED_MEMORY", "lots")
    with pytest.raises(ValidationError, match="use e.g. auto, off, 24GiB or 512MiB"):
        Settings()


def test_the_real_comfyui_uses_the_budget_we_set(runtime, tmp_path, monkeypatch, caplog):
    """Against the booted ComfyUI: start() lowers comfy.model_management.MAX_PINNED_MEMORY, and ComfyUI's own
    pin_memory() refuses a weight over it. This CPU has no CUDA, so ComfyUI's import set the budget to -1 (it
    pins only with a GPU); the host-sized value it computes on a GPU is put back in its place (the one fake)."""
    import comfy.model_management as model_management

    from comfy_runtime.backends.embedded import EmbeddedRuntime

    host_ram = psutil.virtual_memory().total
    monkeypatch.setattr(model_management, "MAX_PINNED_MEMORY", host_ram * 0.95)  # ComfyUI's Linux+CUDA rule
    limit = 64 << 20
    # Whatever this process's own cgroup path is, the fake tree's root file binds it (an ancestor of every path).
    cgroup_tree(tmp_path, {"cgroup.controllers": "memory", "memory.max": str(limit)}, "0::/")
    second = EmbeddedRuntime(runtime.comfyui_path, runtime.models_dir, runtime.work_dir, device="cpu",
                             extra_custom_nodes=runtime.extra_custom_nodes, cgroup_root=tmp_path)
    with caplog.at_level(logging.INFO, logger="comfy_runtime.backends.embedded"):
        second.start()
    second.close()
    assert model_management.MAX_PINNED_MEMORY == limit // 2
    # One module under both names (upsampler.py imports it bare): no second copy with ComfyUI's host-sized budget.
    assert sys.modules["model_management"] is model_management
    assert any("pinned memory: at most 32 MiB, half the container limit" in r.getMessage() for r in caplog.records)
    weight = torch.nn.Parameter(torch.empty(limit // 2 // 4 + 1))  # one float32 over the budget
    pinned_before = model_management.TOTAL_PINNED_MEMORY
    assert model_management.pin_memory(weight) is False
    assert model_management.TOTAL_PINNED_MEMORY == pinned_before and not weight.is_pinned()
