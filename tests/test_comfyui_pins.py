"""The ComfyUI the image installs is the ComfyUI CI runs: the lock's commit is the one the CI wheel vendors, and
cog.yaml's comfy-cli line installs exactly that commit. The comfy-cli line is proved offline: the provisioned
ComfyUI tree becomes a local git repository and the line from cog.yaml runs against it, with its URL, commit
and paths swapped for local ones, through a proxy that records any attempt to reach the network."""

from __future__ import annotations

import os
import shutil
import subprocess
import zipfile

import pytest
import yaml

from comfy_runtime.supply import comfyui_source
from comfy_runtime.supply.comfyui_source import (
    ComfyUISourceError,
    declared_commit,
    download_wheel,
    provision,
)
from comfy_runtime.supply.digest import sha256_of
from comfy_runtime.supply.lockfile import ComfyUIPin, Lock, OfflineSource, load_lock
from comfy_runtime.supply.nodes import (
    COMFY_CLI_QUIET_ENV,
    IMAGE_COMFY_CLI_VENV,
    IMAGE_COMFYUI_PATH,
    comfy_cli_requirements,
    comfyui_install_command,
)
from tests.support.paths import PROJECT_ROOT
from tests.support.recording_proxy import RecordingProxy

COMFY_CLI_VENV = PROJECT_ROOT / ".cache" / "comfy-cli-venv"


def _cog_steps() -> list[str]:
    return yaml.safe_load((PROJECT_ROOT / "cog.yaml").read_text())["build"]["run"]


def test_the_lock_pins_the_commit_the_ci_wheel_vendors(tmp_path):
    lock = load_lock()
    wheel = download_wheel(lock.comfyui.offline_source, tmp_path)  # the very wheel CI provisions from
    assert declared_commit(wheel, lock.comfyui.offline_source) == lock.comfyui.commit
    install = [s for s in _cog_steps() if " install --url " in s]
    assert len(install) == 1 and f"--commit {lock.comfyui.commit} " in install[0]


def _wheel_declaring(path, commit: str):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("pkg/consts.py", f'COMFYUI_VERSION = "{commit}"\n')
        archive.writestr("pkg/_comfyui/nodes.py", "NODE_CLASS_MAPPINGS = {}\n")
        archive.writestr("pkg-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: pkg\nVersion: 1.0\n")
        archive.writestr("pkg-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        archive.writestr("pkg-1.0.dist-info/RECORD", "")
    return path


def test_provisioning_refuses_a_wheel_that_vendors_another_commit(tmp_path, monkeypatch):
    monkeypatch.setattr(comfyui_source, "CACHE_DIR", tmp_path / "cache")
    wheel = _wheel_declaring(tmp_path / "pkg-1.0-py3-none-any.whl", "b" * 40)
    source = OfflineSource(requirement=str(wheel), sha256=sha256_of(wheel), subdir="pkg/_comfyui",
                           commit_declared_in="pkg/consts.py")
    lock = Lock(comfyui=ComfyUIPin(version="9.9.8", repo="r", tag="t", commit="a" * 40, offline_source=source))
    with pytest.raises(ComfyUISourceError) as error:
        provision(lock)
    assert "b" * 40 in str(error.value) and "a" * 40 in str(error.value) and "custom_nodes.lock" in str(error.value)
    assert not (tmp_path / "cache" / "comfyui-9.9.8").exists()
    matching = Lock(comfyui=ComfyUIPin(version="9.9.8", repo="r", tag="t", commit="b" * 40, offline_source=source))
    assert (provision(matching) / "nodes.py").is_file()


def test_the_image_pins_comfy_cli_and_everything_it_imports():
    requirements = comfy_cli_requirements()
    assert "comfy-cli==1.23.0" in requirements and all("==" in line for line in requirements)
    venv_step = next(s for s in _cog_steps() if f"python -m venv {IMAGE_COMFY_CLI_VENV}" in s)
    assert "--no-deps" in venv_step and all(f"'{line}'" in venv_step for line in requirements)
    assert f"rm -rf {IMAGE_COMFY_CLI_VENV}" in " ".join(_cog_steps())  # not left in the image


@pytest.fixture(scope="module")
def comfy_cli_venv() -> str:
    marker = COMFY_CLI_VENV / ".installed"
    requirements = PROJECT_ROOT / "requirements-comfy-cli.txt"
    if not marker.is_file() or marker.stat().st_mtime < requirements.stat().st_mtime:
        done = subprocess.run(["make", "-s", "comfy-cli"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
    return str(COMFY_CLI_VENV)


@pytest.fixture(scope="module")
def local_comfyui_repo(tmp_path_factory) -> tuple[str, str]:
    """The provisioned ComfyUI tree (what CI runs) as a git repository with one commit."""
    repo = tmp_path_factory.mktemp("comfyui-origin") / "ComfyUI"
    shutil.copytree(comfyui_source.provisioned_path(load_lock()), repo,
                    ignore=shutil.ignore_patterns(comfyui_source.READY_MARKER, "__pycache__"))
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@127.0.0.1", "-C", str(repo)]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "provisioned ComfyUI tree"]):
        subprocess.run(git + args, check=True, capture_output=True)
    commit = subprocess.run(git + ["rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    return str(repo), commit


def test_comfy_cli_installs_the_locked_commit_offline_with_the_line_cog_yaml_runs(
    comfy_cli_venv, local_comfyui_repo, tmp_path
):
    lock = load_lock()
    line = comfyui_install_command(url=lock.comfyui.repo, commit=lock.comfyui.commit, workspace=IMAGE_COMFYUI_PATH,
                                   cli_venv=IMAGE_COMFY_CLI_VENV)
    assert line in _cog_steps(), "cog.yaml's install line is not the generated one: run `nodes sync-cog-yaml`"
    assert line.startswith(COMFY_CLI_QUIET_ENV)  # telemetry and the update check are off in the image too
    origin, commit = local_comfyui_repo
    workspace = tmp_path / "opt" / "comfyui"
    local = (line.replace(lock.comfyui.repo, origin).replace(lock.comfyui.commit, commit)
             .replace(IMAGE_COMFYUI_PATH, str(workspace)).replace(IMAGE_COMFY_CLI_VENV, comfy_cli_venv))
    assert local.count(commit) == line.count(lock.comfyui.commit) == 2  # the install and the HEAD proof
    home = tmp_path / "home"
    home.mkdir()
    with RecordingProxy() as proxy:
        env = {**os.environ, **proxy.env(), "HOME": str(home), "GIT_TERMINAL_PROMPT": "0"}
        env.pop("VIRTUAL_ENV", None)
        done = subprocess.run(["bash", "-c", local], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    output = done.stdout + done.stderr
    print(f"\n$ {local}\n{output}")
    assert done.returncode == 0, output
    assert proxy.seen == [], f"comfy-cli tried to reach the network: {proxy.seen}"
    head = subprocess.run(["git", "-C", str(workspace), "rev-parse", "HEAD"], capture_output=True, text=True)
    assert head.stdout.strip() == commit
    version_file = (workspace / "comfyui_version.py").read_text()
    assert f'__version__ = "{lock.comfyui.version}"' in version_file
    assert (workspace / "nodes.py").is_file()
    assert not (workspace / "custom_nodes" / "ComfyUI-Manager").exists() and "Skipping installation of ComfyUI-Manager" in output
    assert not (workspace / ".venv").exists()  # comfy-cli used its own venv, made none inside ComfyUI
    status = subprocess.run(["git", "-C", str(workspace), "status", "--porcelain"], capture_output=True, text=True)
    assert status.stdout == ""  # the tree is the commit, nothing added


def test_the_recording_proxy_sees_a_git_clone_from_github(tmp_path):
    # What the comfy-cli proof relies on: a clone of the real URL (what cog.yaml does) would show up here.
    with RecordingProxy() as proxy:
        env = {**os.environ, **proxy.env(), "HOME": str(tmp_path), "GIT_TERMINAL_PROMPT": "0"}
        done = subprocess.run(["git", "ls-remote", load_lock().comfyui.repo], env=env, capture_output=True, timeout=60)
    assert done.returncode != 0
    assert proxy.seen and proxy.seen[0].startswith("CONNECT github.com:443"), proxy.seen
