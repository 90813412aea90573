"""Pinned patches on the pinned ComfyUI (custom_nodes.lock [[comfyui.patch]], supply/patches.py), with the real git.

Every test works on a copy of the provisioned tree's patched files in a temp folder: the shared tree is never
patched in place here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import subprocess
import sys
import zipfile

import pytest

from comfy_runtime.settings import PROJECT_ROOT
from comfy_runtime.supply import comfyui_source
from comfy_runtime.supply.comfyui_source import provision
from comfy_runtime.supply.digest import sha256_of
from comfy_runtime.supply.lockfile import ComfyUIPin, Lock, OfflineSource, load_lock
from comfy_runtime.supply.nodes import cog_run_steps
from comfy_runtime.supply.patches import (
    PatchError,
    PatchPin,
    PatchState,
    apply_all,
    apply_patch,
    image_apply_step,
    state_of,
)
from tests.support.patched_comfyui import patched_files, pristine_copy

MEANFLOW = load_lock().comfyui.patches[0]


def _snapshot(tree, pin):
    return {name: (tree / name).read_bytes() for name in patched_files(pin)}


def test_the_lock_pins_the_meanflow_fix_by_sha256_and_upstream_commit():
    assert MEANFLOW.upstream_commit == "e2a800e7ef225260c078ce484c75bb40161d9d94"
    assert sha256_of(MEANFLOW.path) == MEANFLOW.sha256
    assert MEANFLOW.path.is_relative_to(PROJECT_ROOT / "patches")
    text = MEANFLOW.path.read_text()
    assert MEANFLOW.upstream_commit in text  # the file names its upstream commit too
    assert sorted(patched_files(MEANFLOW)) == ["comfy/ldm/hunyuan_video/model.py", "comfy/model_detection.py"]


def test_it_applies_to_the_locked_release_and_an_already_patched_tree_is_left_alone(tmp_path):
    tree = pristine_copy(tmp_path / "comfyui")
    assert state_of(MEANFLOW, tree) is PatchState.NOT_APPLIED
    assert apply_patch(MEANFLOW, tree) is PatchState.NOT_APPLIED
    model = (tree / "comfy/ldm/hunyuan_video/model.py").read_text()
    assert "vec = (vec + vec_r) if self.params.meanflow_sum else (vec + vec_r) / 2" in model
    assert "    meanflow_sum: bool\n" in model
    assert 'dit_config["meanflow_sum"] = True' in (tree / "comfy/model_detection.py").read_text()
    assert state_of(MEANFLOW, tree) is PatchState.APPLIED
    before = _snapshot(tree, MEANFLOW)
    mtimes = {name: (tree / name).stat().st_mtime_ns for name in before}
    assert apply_all((MEANFLOW,), tree) == [(MEANFLOW, PatchState.APPLIED)]
    assert _snapshot(tree, MEANFLOW) == before
    assert {name: (tree / name).stat().st_mtime_ns for name in before} == mtimes  # not even rewritten


def test_a_patch_file_with_another_sha256_is_refused_and_the_tree_untouched(tmp_path):
    tree = pristine_copy(tmp_path / "comfyui")
    before = _snapshot(tree, MEANFLOW)
    wrong = dataclasses.replace(MEANFLOW, sha256="0" * 64)
    with pytest.raises(PatchError, match=f"has sha256 {MEANFLOW.sha256}, custom_nodes.lock pins {'0' * 64}"):
        apply_all((wrong,), tree)
    edited = tmp_path / MEANFLOW.name
    edited.write_text(MEANFLOW.path.read_text().replace("meanflow_sum: bool", "meanflow_sum: int"))
    with pytest.raises(PatchError, match="the file changed"):
        apply_patch(dataclasses.replace(MEANFLOW, file=str(edited)), tree)
    assert _snapshot(tree, MEANFLOW) == before


def test_a_patch_that_does_not_apply_cleanly_is_refused_and_nothing_is_changed(tmp_path):
    tree = pristine_copy(tmp_path / "comfyui")
    model = tree / "comfy/ldm/hunyuan_video/model.py"
    model.write_text(model.read_text().replace("vec = (vec + vec_r) / 2", "vec = (vec + vec_r) * 0.5"))
    before = _snapshot(tree, MEANFLOW)
    assert state_of(MEANFLOW, tree) is PatchState.DOES_NOT_APPLY
    with pytest.raises(PatchError, match="does not apply cleanly") as error:
        apply_patch(MEANFLOW, tree)
    assert "nothing was changed" in str(error.value) and MEANFLOW.upstream_commit[:10] in str(error.value)
    # git apply is all or nothing: the detection hunk, which would fit, was not applied either.
    assert _snapshot(tree, MEANFLOW) == before
    assert not list(tree.rglob("*.rej")) and not list(tree.rglob("*.orig"))


def _wheel_and_patch(tmp_path):
    wheel = tmp_path / "vendorpkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("vendorpkg/_comfyui/nodes.py", "NODE_CLASS_MAPPINGS = {}\nVALUE = 1\n")
        archive.writestr("vendorpkg-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: vendorpkg\nVersion: 1.0\n")
        archive.writestr("vendorpkg-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        archive.writestr("vendorpkg-1.0.dist-info/RECORD", "")
    patch = tmp_path / "0001-value.patch"
    patch.write_text("Upstream 1111111111111111111111111111111111111111\n\n"
                     "diff --git a/nodes.py b/nodes.py\n--- a/nodes.py\n+++ b/nodes.py\n@@ -1,2 +1,2 @@\n"
                     " NODE_CLASS_MAPPINGS = {}\n-VALUE = 1\n+VALUE = 2\n")
    pin = PatchPin(file=str(patch), sha256=hashlib.sha256(patch.read_bytes()).hexdigest(), upstream_commit="1" * 40)
    source = OfflineSource(requirement=str(wheel), sha256=sha256_of(wheel), subdir="vendorpkg/_comfyui")
    return Lock(comfyui=ComfyUIPin(version="9.9.9", repo="r", tag="t", commit="", offline_source=source, patches=(pin,)))


def test_provisioning_applies_the_patches_once_and_refuses_a_tree_they_do_not_fit(tmp_path, monkeypatch):
    monkeypatch.setattr(comfyui_source, "CACHE_DIR", tmp_path / "cache")
    lock = _wheel_and_patch(tmp_path)
    target = provision(lock)
    assert (target / "nodes.py").read_text().endswith("VALUE = 2\n")
    assert provision(lock) == target and (target / "nodes.py").read_text().endswith("VALUE = 2\n")
    # A tree provisioned before the patch was locked gets it on the next provision, in place.
    (target / "nodes.py").write_text("NODE_CLASS_MAPPINGS = {}\nVALUE = 1\n")
    provision(lock)
    assert (target / "nodes.py").read_text().endswith("VALUE = 2\n")
    (target / "nodes.py").write_text("NODE_CLASS_MAPPINGS = {}\nVALUE = 3\n")
    with pytest.raises(PatchError, match="does not apply cleanly"):
        provision(lock)
    assert (target / "nodes.py").read_text().endswith("VALUE = 3\n")


def test_a_fresh_provision_a_patch_refuses_is_never_marked_ready(tmp_path, monkeypatch):
    monkeypatch.setattr(comfyui_source, "CACHE_DIR", tmp_path / "cache")
    lock = _wheel_and_patch(tmp_path)
    pin = lock.comfyui.patches[0]
    pin.path.write_text(pin.path.read_text().replace("-VALUE = 1", "-VALUE = 7"))
    bad = dataclasses.replace(pin, sha256=sha256_of(pin.path))
    with pytest.raises(PatchError, match="does not apply cleanly"):
        provision(dataclasses.replace(lock, comfyui=dataclasses.replace(lock.comfyui, patches=(bad,))))
    assert not (tmp_path / "cache" / "comfyui-9.9.9").exists()


def test_the_image_step_carries_the_same_bytes_checks_the_sha256_and_applies_them(tmp_path):
    steps = cog_run_steps(load_lock())
    step = image_apply_step(MEANFLOW, "/opt/comfyui")
    assert step in steps and steps.index(step) == 2  # right after comfy-cli's checkout, before its venv is removed
    assert MEANFLOW.sha256 in step
    # The same shell line, pointed at a git checkout of the pristine files (the image's tree is comfy-cli's clone).
    tree = pristine_copy(tmp_path / "opt-comfyui")
    for args in (("init", "-q"), ("add", "-A"), ("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "v0.3.75")):
        subprocess.run(["git", *args], cwd=tree, check=True)
    for _ in range(2):  # the second run finds it applied and leaves it alone
        subprocess.run(["bash", "-euo", "pipefail", "-c", image_apply_step(MEANFLOW, str(tree))], check=True)
        assert state_of(MEANFLOW, tree) is PatchState.APPLIED
    assert "meanflow_sum" in (tree / "comfy/ldm/hunyuan_video/model.py").read_text()


def test_nodes_verify_reports_what_is_patched(tmp_path):
    tree = pristine_copy(tmp_path / "comfyui", files_only=False)
    (tree / "custom_nodes").mkdir(exist_ok=True)
    command = [sys.executable, "-m", "comfy_runtime", "nodes", "verify", "--target", str(tree / "custom_nodes")]
    unpatched = subprocess.run(command, capture_output=True, text=True, cwd=PROJECT_ROOT)
    assert unpatched.returncode == 1
    assert f"{MEANFLOW.name} (upstream {MEANFLOW.upstream_commit[:10]}" in unpatched.stderr
    assert "not applied" in unpatched.stderr and "comfyui provision" in unpatched.stderr
    apply_all((MEANFLOW,), tree)
    patched = subprocess.run(command, capture_output=True, text=True, cwd=PROJECT_ROOT)
    assert patched.returncode == 0, patched.stderr
    assert f"ComfyUI patch {MEANFLOW.name} (upstream {MEANFLOW.upstream_commit[:10]}" in patched.stdout
    assert "applied in" in patched.stdout and "1 ComfyUI patch(es) match" in patched.stdout
