"""custom_nodes.py with a real local git repository as the custom node."""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import replace
from importlib import metadata
from pathlib import Path

import pytest

from comfy_runtime.supply.lockfile import LOCK_PATH, NodePin, load_lock
from comfy_runtime.supply.nodes import (
    NodesError,
    install_all,
    install_node,
    lock_comfyui_commit,
    node_load_report,
    resolve_tag,
    verify_node,
)
from tests.support.paths import PROJECT_ROOT


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture(scope="module")
def node_repo(tmp_path_factory) -> tuple[Path, str, str]:
    """A custom-node repository with two commits and an annotated tag on the first."""
    repo = tmp_path_factory.mktemp("ComfyUI-Example")
    git("init", "-q", "-b", "main", cwd=repo)
    (repo / "__init__.py").write_text("NODE_CLASS_MAPPINGS = {}\nVERSION = 1\n")
    git("add", ".", cwd=repo)
    git("commit", "-q", "-m", "one", cwd=repo)
    first = git("rev-parse", "HEAD", cwd=repo)
    git("tag", "-a", "v1.0", "-m", "release", cwd=repo)
    (repo / "__init__.py").write_text("NODE_CLASS_MAPPINGS = {}\nVERSION = 2\n")
    git("commit", "-q", "-am", "two", cwd=repo)
    return repo, first, git("rev-parse", "HEAD", cwd=repo)


def pin(repo: Path, commit: str, **more) -> NodePin:
    return NodePin(name="ComfyUI-Example", repo=repo.as_uri(), commit=commit, **more)


def test_install_checks_out_the_locked_commit_and_verifies(node_repo, tmp_path):
    repo, first, _second = node_repo
    folder = install_node(pin(repo, first), tmp_path, pip=False)
    assert folder == tmp_path / "ComfyUI-Example"
    assert git("rev-parse", "HEAD", cwd=folder) == first
    assert "VERSION = 1" in (folder / "__init__.py").read_text()
    assert verify_node(pin(repo, first), tmp_path) == []


def test_a_moved_head_is_detected_and_install_puts_it_back(node_repo, tmp_path):
    repo, first, second = node_repo
    folder = install_node(pin(repo, first), tmp_path, pip=False)
    git("fetch", "-q", "origin", cwd=folder)
    git("checkout", "-q", second, cwd=folder)  # someone updated the node by hand
    problems = verify_node(pin(repo, first), tmp_path)
    assert len(problems) == 1 and "HEAD moved" in problems[0] and second in problems[0] and first in problems[0]
    install_node(pin(repo, first), tmp_path, pip=False)
    assert verify_node(pin(repo, first), tmp_path) == []


def test_local_changes_are_reported_and_not_overwritten(node_repo, tmp_path):
    repo, first, _ = node_repo
    folder = install_node(pin(repo, first), tmp_path, pip=False)
    (folder / "__init__.py").write_text("patched = True\n")
    assert any("local changes" in p for p in verify_node(pin(repo, first), tmp_path))
    with pytest.raises(NodesError, match="local changes"):
        install_node(pin(repo, first), tmp_path, pip=False)
    assert (folder / "__init__.py").read_text() == "patched = True\n"


def test_a_short_hash_is_refused_before_anything_is_cloned(node_repo, tmp_path):
    repo, first, _ = node_repo
    lock = replace(load_lock(), nodes=(pin(repo, first), replace(pin(repo, first[:7]), name="Short")))
    with pytest.raises(NodesError) as error:
        install_all(lock, tmp_path, pip=False)
    assert "Short" in str(error.value) and "40-character" in str(error.value) and first[:7] in str(error.value)
    assert list(tmp_path.iterdir()) == []
    assert "40-character" in verify_node(pin(repo, first[:7]), tmp_path)[0]


def test_a_commit_that_is_not_in_the_repository_is_an_error(node_repo, tmp_path):
    repo, _, _ = node_repo
    # The repository answers (the full fetch works); the commit is what is wrong, and the message says so.
    with pytest.raises(NodesError, match=rf"commit {'f' * 40} is not in {repo.as_uri()} .*check the commit in custom_nodes.lock"):
        install_node(pin(repo, "f" * 40), tmp_path, pip=False)


def test_requirements_must_be_pinned_and_are_checked(node_repo, tmp_path):
    repo, first, _ = node_repo
    with pytest.raises(NodesError, match="pinned with =="):
        install_node(pin(repo, first, requirements=("httpx>=0.20",)), tmp_path, pip=False)
    httpx_version = metadata.version("httpx")
    install_node(pin(repo, first), tmp_path, pip=False)
    assert verify_node(pin(repo, first, requirements=(f"httpx=={httpx_version}",)), tmp_path) == []
    problems = verify_node(pin(repo, first, requirements=("httpx==0.0.1",)), tmp_path)
    assert len(problems) == 1 and "httpx==0.0.1" in problems[0] and httpx_version in problems[0]


def test_missing_install_is_reported(node_repo, tmp_path):
    repo, first, _ = node_repo
    assert "not installed" in verify_node(pin(repo, first), tmp_path)[0]


def test_comfyui_tag_resolves_to_its_commit_and_lands_in_the_lock(node_repo, tmp_path):
    repo, first, _ = node_repo
    assert resolve_tag(repo.as_uri(), "v1.0") == first  # the annotated tag, peeled to its commit
    with pytest.raises(NodesError, match="no tag"):
        resolve_tag(repo.as_uri(), "v9.9")
    lock_path = tmp_path / "custom_nodes.lock"
    shutil.copyfile(LOCK_PATH, lock_path)
    lock_comfyui_commit(lock_path, first)
    locked = load_lock(lock_path)
    assert locked.comfyui.commit == first
    assert locked.comfyui.offline_source == load_lock().comfyui.offline_source  # the rest is untouched


def test_node_load_report_names_a_failed_locked_node_only_when_the_workflow_needs_it(node_repo):
    repo, first, _ = node_repo
    lock = replace(load_lock(), nodes=(pin(repo, first),))
    graph = {"1": {"class_type": "ExampleNode", "inputs": {}}, "2": {"class_type": "SaveVideo", "inputs": {}}}
    failed = node_load_report(lock, set(), graph, {"SaveVideo"})
    assert failed.failed == ("ComfyUI-Example",) and "ComfyUI-Example" in failed.error() and "ExampleNode" in failed.error()
    assert node_load_report(lock, set(), {"2": graph["2"]}, {"SaveVideo"}).error() is None
    assert node_load_report(lock, {"ComfyUI-Example"}, graph, {"SaveVideo", "ExampleNode"}).error() is None


def test_cli_install_and_verify(node_repo, tmp_path):
    repo, first, second = node_repo
    lock_path = tmp_path / "custom_nodes.lock"
    lock_path.write_text(
        LOCK_PATH.read_text() + f'\n[[node]]\nname = "ComfyUI-Example"\nrepo = "{repo.as_uri()}"\ncommit = "{first}"\n'
    )

    def cli(action):
        return subprocess.run(
            [sys.executable, "-m", "comfy_runtime", "nodes", action, "--lock", str(lock_path), "--target", str(tmp_path / "cn")],
            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120,
        )

    assert cli("install").returncode == 0
    assert cli("verify").returncode == 0
    git("fetch", "-q", "origin", cwd=tmp_path / "cn" / "ComfyUI-Example")
    git("checkout", "-q", second, cwd=tmp_path / "cn" / "ComfyUI-Example")
    verified = cli("verify")
    assert verified.returncode == 1 and "HEAD moved" in verified.stderr


def test_cli_lock_pins_comfyui_and_regenerates_cog_yaml(node_repo, tmp_path):
    repo, first, _ = node_repo  # stands in for the ComfyUI repository: a tag on a known commit
    lock_path = tmp_path / "custom_nodes.lock"
    text = LOCK_PATH.read_text()
    text = text.replace(f'repo = "{load_lock().comfyui.repo}"', f'repo = "{repo.as_uri()}"')
    lock_path.write_text(text.replace(f'tag = "{load_lock().comfyui.tag}"', 'tag = "v1.0"'))
    cog_yaml = tmp_path / "cog.yaml"
    shutil.copyfile(PROJECT_ROOT / "cog.yaml", cog_yaml)
    done = subprocess.run(
        [sys.executable, "-m", "comfy_runtime", "nodes", "lock", "--lock", str(lock_path), "--cog-yaml", str(cog_yaml)],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert load_lock(lock_path).comfyui.commit == first
    assert f'test "$(git -C /opt/comfyui rev-parse HEAD)" = "{first}"' in cog_yaml.read_text()
    assert "not pinned to a commit" not in cog_yaml.read_text()
