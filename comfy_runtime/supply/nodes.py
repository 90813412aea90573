"""custom_nodes.lock in practice: install each node at its full commit, verify an install, pin ComfyUI,
and keep cog.yaml's install steps equal to the lock.

A node is a git repository checked out at a 40-character commit into `<custom_nodes dir>/<name>`
(ComfyUI loads it under that folder name). Short hashes are refused: they are ambiguous as a
repository grows and cannot be checked against HEAD.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement

from comfy_runtime.errors import HunyuanVideoError
from comfy_runtime.settings import PROJECT_ROOT
from comfy_runtime.supply.commands import NODES_INSTALL_COMMAND as INSTALL_COMMAND
from comfy_runtime.supply.commands import NODES_LOCK_COMMAND as LOCK_COMMAND
from comfy_runtime.supply.commands import NODES_VERIFY_COMMAND as VERIFY_COMMAND
from comfy_runtime.supply.commands import SYNC_COG_YAML_COMMAND
from comfy_runtime.supply.lockfile import Lock, NodePin
from comfy_runtime.supply.patches import image_apply_step

FULL_COMMIT = re.compile(r"[0-9a-f]{40}")
# Where the image puts ComfyUI (cog.yaml sets HV_COMFYUI_PATH to it): outside /src, which `cog predict`
# replaces with a bind mount of the project during development.
IMAGE_COMFYUI_PATH = "/opt/comfyui"
# comfy-cli lives in a venv of its own during the build (its pins differ from the runtime's), then is removed.
IMAGE_COMFY_CLI_VENV = "/opt/comfy-cli"
COMFY_CLI_REQUIREMENTS = PROJECT_ROOT / "requirements-comfy-cli.txt"
# comfy-cli's documented opt-outs: no telemetry (PostHog/Mixpanel) and no PyPI update check during the build.
COMFY_CLI_QUIET_ENV = "DO_NOT_TRACK=1 COMFY_NO_TELEMETRY=1 COMFY_NO_UPDATE_CHECK=1"
COG_BEGIN_PREFIX = "# BEGIN generated from custom_nodes.lock"
COG_BEGIN = f"{COG_BEGIN_PREFIX} by `{SYNC_COG_YAML_COMMAND}`: do not edit"
COG_END = "# END generated from custom_nodes.lock"


class NodesError(HunyuanVideoError, RuntimeError):
    pass


def check_pin(node: NodePin) -> None:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", node.name):
        raise NodesError(f"custom node name {node.name!r} must be a plain folder name (letters, digits, _ . -)")
    if not FULL_COMMIT.fullmatch(node.commit):
        raise NodesError(
            f"custom node {node.name}: commit {node.commit!r} is not a full 40-character hex commit. Short hashes "
            f"are refused (ambiguous, and HEAD cannot be checked against them): put the full hash from "
            f"`git rev-parse <hash>` in custom_nodes.lock."
        )
    if not node.repo:
        raise NodesError(f"custom node {node.name}: no repo URL in custom_nodes.lock")
    for line in node.requirements:
        try:
            requirement = Requirement(line)
        except InvalidRequirement as error:
            raise NodesError(f"custom node {node.name}: requirement {line!r} does not parse: {error}") from error
        specs = list(requirement.specifier)
        if len(specs) != 1 or specs[0].operator != "==":
            raise NodesError(f"custom node {node.name}: requirement {line!r} must be pinned with == (e.g. {requirement.name}==1.2.3)")


def _git(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)


def head_of(folder: Path) -> str | None:
    done = _git("rev-parse", "HEAD", cwd=folder)
    return done.stdout.strip() if done.returncode == 0 else None


def _dirty(folder: Path) -> list[str]:
    done = _git("status", "--porcelain", "--untracked-files=no", cwd=folder)
    return done.stdout.splitlines() if done.returncode == 0 else ["(git status failed)"]


def install_node(node: NodePin, target_dir: Path, *, pip: bool = True) -> Path:
    """Check out node at its commit under target_dir/<name>, prove HEAD, install its requirements."""
    check_pin(node)
    folder = Path(target_dir) / node.name
    fix = f"Remove {folder} and run `{INSTALL_COMMAND}` again."
    if folder.exists():
        if not (folder / ".git").exists():
            raise NodesError(f"custom node {node.name}: {folder} exists but is not a git checkout. {fix}")
        if _dirty(folder):
            raise NodesError(f"custom node {node.name}: {folder} has local changes ({_dirty(folder)[:3]}). {fix}")
        _git("remote", "set-url", "origin", node.repo, cwd=folder)
    else:
        folder.mkdir(parents=True)
        for args in (("init", "-q"), ("remote", "add", "origin", node.repo)):
            done = _git(*args, cwd=folder)
            if done.returncode != 0:
                raise NodesError(f"custom node {node.name}: git {' '.join(args)} failed: {done.stderr.strip()}")
    if head_of(folder) != node.commit:
        _checkout(node, folder, fix)
    head = head_of(folder)
    if head != node.commit:
        raise NodesError(f"custom node {node.name}: HEAD is {head} after checkout, the lock pins {node.commit}. {fix}")
    if pip and node.requirements:
        done = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", *node.requirements], capture_output=True, text=True
        )
        if done.returncode != 0:
            raise NodesError(
                f"custom node {node.name}: pip could not install {list(node.requirements)}: "
                f"{done.stderr.strip()[-1500:]}. Check the pins in custom_nodes.lock and that the index is reachable."
            )
    return folder


def _checkout(node: NodePin, folder: Path, fix: str) -> None:
    # By commit first (one shallow fetch; GitHub serves any reachable commit), else the whole history.
    fetched = _git("fetch", "-q", "--depth", "1", "origin", node.commit, cwd=folder)
    if fetched.returncode != 0:
        fetched = _git("fetch", "-q", "origin", cwd=folder)
    if fetched.returncode != 0:
        raise NodesError(f"custom node {node.name}: cannot fetch {node.repo}: {fetched.stderr.strip()}. {fix}")
    done = _git("checkout", "-q", "--detach", node.commit, cwd=folder)
    if done.returncode != 0:
        raise NodesError(
            f"custom node {node.name}: commit {node.commit} is not in {node.repo} ({done.stderr.strip()}); "
            "check the commit in custom_nodes.lock."
        )


def install_all(lock: Lock, target_dir: Path, *, pip: bool = True) -> list[Path]:
    for node in lock.nodes:
        check_pin(node)  # every pin is checked before anything is cloned
    return [install_node(node, target_dir, pip=pip) for node in lock.nodes]


def verify_node(node: NodePin, target_dir: Path) -> list[str]:
    """Problems with an installed node; empty when it is exactly what the lock says."""
    try:
        check_pin(node)
    except NodesError as error:
        return [str(error)]
    folder = Path(target_dir) / node.name
    fix = f"run `{INSTALL_COMMAND}`"
    if not folder.is_dir():
        return [f"custom node {node.name}: not installed at {folder}; {fix}"]
    head = head_of(folder)
    if head is None:
        return [f"custom node {node.name}: {folder} is not a git checkout; remove it and {fix}"]
    problems = []
    if head != node.commit:
        problems.append(f"custom node {node.name}: HEAD moved to {head}, the lock pins {node.commit}; {fix}")
    dirty = _dirty(folder)
    if dirty:
        problems.append(f"custom node {node.name}: local changes in {folder}: {dirty[:5]}; discard them and {fix}")
    for line in node.requirements:
        requirement = Requirement(line)
        wanted = next(iter(requirement.specifier)).version
        try:
            installed = metadata.version(requirement.name)
        except metadata.PackageNotFoundError:
            installed = None
        if installed != wanted:
            problems.append(f"custom node {node.name}: needs {line}, installed: {installed or 'nothing'}; {fix}")
    return problems


def verify_all(lock: Lock, target_dir: Path) -> list[str]:
    return [problem for node in lock.nodes for problem in verify_node(node, target_dir)]


# -- boot: a locked node that did not load ---------------------------------------------------------
@dataclass(frozen=True)
class NodeLoadReport:
    failed: tuple[str, ...]  # locked node names ComfyUI did not load
    missing_classes: tuple[str, ...]  # node classes the workflow uses that ComfyUI lacks

    def error(self) -> str | None:
        if not (self.failed and self.missing_classes):
            return None
        return (
            f"the workflow needs node class(es) {', '.join(self.missing_classes)}, which ComfyUI does not have, and "
            f"the locked custom node(s) {', '.join(self.failed)} failed to import (or are not installed): see the "
            f"traceback logged above by ComfyUI. Run `{VERIFY_COMMAND}` (and `{INSTALL_COMMAND}`) to fix the install."
        )


def node_load_report(lock: Lock, loaded_modules: set[str], graph: dict, known_classes: set[str]) -> NodeLoadReport:
    failed = tuple(node.name for node in lock.nodes if node.name not in loaded_modules)
    used = {node.get("class_type", "") for node in graph.values()}
    return NodeLoadReport(failed=failed, missing_classes=tuple(sorted(used - known_classes)))


# -- pinning ComfyUI and cog.yaml --------------------------------------------------------------------
def resolve_tag(repo: str, tag: str) -> str:
    """The commit a tag points at (annotated tags peeled), from the remote without cloning."""
    done = _git("ls-remote", repo, f"refs/tags/{tag}", f"refs/tags/{tag}^{{}}")
    if done.returncode != 0:
        raise NodesError(f"cannot list {repo}: {done.stderr.strip()}; this needs network access to the repository")
    refs = dict(reversed(line.split("\t")) for line in done.stdout.splitlines() if "\t" in line)
    commit = refs.get(f"refs/tags/{tag}^{{}}") or refs.get(f"refs/tags/{tag}")
    if not commit or not FULL_COMMIT.fullmatch(commit):
        raise NodesError(f"{repo} has no tag {tag}; check [comfyui] tag in custom_nodes.lock")
    return commit


def lock_comfyui_commit(lock_path: Path, commit: str) -> None:
    text = lock_path.read_text()
    section = re.search(r"(?ms)^\[comfyui\]\n.*?(?=^\[)", text)
    assert section is not None, "custom_nodes.lock has no [comfyui] table"
    updated = re.sub(r'(?m)^commit\s*=.*$', f'commit = "{commit}"', section.group(0), count=1)
    lock_path.write_text(text[: section.start()] + updated + text[section.end():])


def comfy_cli_requirements(path: Path = COMFY_CLI_REQUIREMENTS) -> list[str]:
    lines = [line.strip() for line in Path(path).read_text().splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def comfyui_install_command(*, url: str, commit: str, workspace: str, cli_venv: str) -> str:
    """comfy-cli's install of ComfyUI at one full commit, and the proof that HEAD is that commit.

    `--version nightly` comes before `--commit` because comfy-cli validates --commit against the version parsed
    so far. Torch, ComfyUI's requirements.txt and ComfyUI-Manager are skipped: requirements.txt pins the runtime
    (torch included) and the product loads no manager. `--nvidia` only answers the GPU question comfy-cli would
    otherwise ask; with torch skipped it installs nothing. VIRTUAL_ENV makes comfy-cli use its own venv's Python
    instead of creating one inside the ComfyUI folder.
    """
    return (
        f"{COMFY_CLI_QUIET_ENV} VIRTUAL_ENV={cli_venv} {cli_venv}/bin/comfy --skip-prompt --workspace {workspace} "
        f"install --url {url} --version nightly --commit {commit} --skip-manager --skip-torch-or-directml "
        f'--skip-requirement --nvidia && test "$(git -C {workspace} rev-parse HEAD)" = "{commit}"'
    )


def cog_run_steps(lock: Lock, cli_requirements: list[str] | None = None) -> list[str]:
    """The image's install steps for ComfyUI and the locked nodes: what cog.yaml's generated block must hold."""
    comfy = lock.comfyui
    cli_requirements = comfy_cli_requirements() if cli_requirements is None else cli_requirements
    if not FULL_COMMIT.fullmatch(comfy.commit):  # a tag can be moved: an image is built from a full commit or not at all
        steps = [f"echo 'ERROR: ComfyUI {comfy.tag} is not pinned to a full commit in custom_nodes.lock: run "
                 f"`{LOCK_COMMAND}` (needs GitHub), then build again' && exit 1"]
    else:
        steps = [
            f"python -m venv {IMAGE_COMFY_CLI_VENV} && {IMAGE_COMFY_CLI_VENV}/bin/pip install --quiet --no-cache-dir "
            "--no-deps " + " ".join(f"'{r}'" for r in cli_requirements),
            comfyui_install_command(url=comfy.repo, commit=comfy.commit, workspace=IMAGE_COMFYUI_PATH,
                                    cli_venv=IMAGE_COMFY_CLI_VENV),
            # The lock's pinned patches, the same bytes `comfyui provision` applies to CI's tree (supply/patches.py).
            *(image_apply_step(pin, IMAGE_COMFYUI_PATH) for pin in comfy.patches),
            # ComfyUI's modules compiled once, beside the tree, where the lean boot reads them (boot_plan.py).
            f"PYTHONPYCACHEPREFIX={IMAGE_COMFYUI_PATH}.bytecode python -m compileall -q -j 0 {IMAGE_COMFYUI_PATH}",
            f'rm -rf {IMAGE_COMFY_CLI_VENV} "$HOME/.config/comfy-cli"',
        ]
    # Custom nodes stay with our own git steps: comfy-cli's `node install` runs through ComfyUI-Manager (which the
    # image does not carry) and takes registry ids or versions, not a full commit with HEAD checked against it.
    for node in lock.nodes:
        check_pin(node)
        folder = f"{IMAGE_COMFYUI_PATH}/custom_nodes/{node.name}"
        steps.append(
            f"git init -q {folder} && cd {folder} && git remote add origin {node.repo} && "
            f"git fetch -q --depth 1 origin {node.commit} && git checkout -q --detach FETCH_HEAD && "
            f'test "$(git rev-parse HEAD)" = "{node.commit}"'
        )
        if node.requirements:
            steps.append("pip install --no-cache-dir " + " ".join(f"'{r}'" for r in node.requirements))
    return steps


def render_cog_block(lock: Lock, indent: str = "    ") -> str:
    lines = [f"{indent}{COG_BEGIN}"]
    lines += [f"{indent}- {_yaml_quote(step)}" for step in cog_run_steps(lock)]
    lines.append(f"{indent}{COG_END}")
    return "\n".join(lines)


def _yaml_quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def sync_cog_yaml(cog_yaml: Path, lock: Lock) -> bool:
    """Rewrite the generated block of cog.yaml from the lock; True when it changed."""
    text = cog_yaml.read_text()
    # Any earlier wording of the BEGIN line is replaced too.
    pattern = re.compile(rf"(?m)^([ \t]*){re.escape(COG_BEGIN_PREFIX)}[^\n]*\n.*?^[ \t]*{re.escape(COG_END)}$", re.S)
    match = pattern.search(text)
    if match is None:
        raise NodesError(f"{cog_yaml} has no generated block ({COG_BEGIN!r} ... {COG_END!r}) under build.run")
    updated = text[: match.start()] + render_cog_block(lock, match.group(1)) + text[match.end():]
    if updated != text:
        cog_yaml.write_text(updated)
    return updated != text
