"""Pinned patches on the pinned ComfyUI: upstream fixes the locked release does not have yet.

Each patch is a file in the repo (patches/), pinned in custom_nodes.lock by sha256 and naming the upstream commit
it backports. Both provisioning paths apply them: the wheel's tree (comfyui_source.provision) and the image's
comfy-cli checkout (cog.yaml's generated block carries the same bytes, checked by the same sha256).

The tool is `git apply`, run with the tree as its working directory and GIT_CEILING_DIRECTORIES set so it never
takes an enclosing repository for the tree's: git is already required on both paths (custom nodes, comfy-cli), it
applies all hunks or none (GNU patch leaves .rej files and half a tree behind), it refuses fuzz by default (a patch
that does not apply exactly is refused, never bent into place), and `--reverse --check` tells an already-patched
tree apart from one the patch does not fit.
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from comfy_runtime.errors import HunyuanVideoError
from comfy_runtime.settings import PROJECT_ROOT
from comfy_runtime.supply.commands import COMFYUI_PROVISION_COMMAND
from comfy_runtime.supply.digest import sha256_of

FULL_COMMIT = re.compile(r"[0-9a-f]{40}")
SHA256 = re.compile(r"[0-9a-f]{64}")


class PatchError(HunyuanVideoError, RuntimeError):
    pass


@dataclass(frozen=True)
class PatchPin:
    file: str  # relative to the project root, e.g. patches/comfyui/0001-....patch
    sha256: str
    upstream_commit: str  # the ComfyUI commit the patch backports (40 hex)
    title: str = ""

    @property
    def path(self) -> Path:
        return PROJECT_ROOT / self.file

    @property
    def name(self) -> str:
        return Path(self.file).name

    def describe(self) -> str:
        return f"{self.name} (upstream {self.upstream_commit[:10]}{': ' + self.title if self.title else ''})"


class PatchState(Enum):
    APPLIED = "applied"
    NOT_APPLIED = "not applied"  # applies cleanly, not yet applied
    DOES_NOT_APPLY = "does not apply"  # neither applies nor is applied: another tree, or edited files


def check_pin(pin: PatchPin) -> None:
    if not FULL_COMMIT.fullmatch(pin.upstream_commit):
        raise PatchError(f"patch {pin.file}: upstream_commit {pin.upstream_commit!r} is not a full 40-character commit; "
                         "name the upstream ComfyUI commit it backports in custom_nodes.lock")
    if not SHA256.fullmatch(pin.sha256):
        raise PatchError(f"patch {pin.file}: sha256 {pin.sha256!r} is not 64 hex characters; set it to "
                         f"`sha256sum {pin.file}` in custom_nodes.lock")


def verified_bytes(pin: PatchPin) -> bytes:
    """The patch file's bytes, refused unless they hash to the pinned sha256."""
    check_pin(pin)
    if not pin.path.is_file():
        raise PatchError(f"patch {pin.file} named in custom_nodes.lock is missing; restore it from git")
    actual = sha256_of(pin.path)
    if actual != pin.sha256:
        raise PatchError(
            f"patch {pin.file} has sha256 {actual}, custom_nodes.lock pins {pin.sha256}: the file changed; restore it "
            "from git, or pin the new file's sha256 in custom_nodes.lock after reviewing it"
        )
    return pin.path.read_bytes()


def _git_apply(tree: Path, patch: Path, *flags: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "GIT_CEILING_DIRECTORIES": str(Path(tree).resolve().parent)}
    return subprocess.run(["git", "apply", *flags, str(patch)], cwd=tree, capture_output=True, text=True, env=env)


def state_of(pin: PatchPin, tree: Path) -> PatchState:
    verified_bytes(pin)
    if _git_apply(tree, pin.path, "--reverse", "--check").returncode == 0:
        return PatchState.APPLIED
    if _git_apply(tree, pin.path, "--check").returncode == 0:
        return PatchState.NOT_APPLIED
    return PatchState.DOES_NOT_APPLY


def apply_patch(pin: PatchPin, tree: Path) -> PatchState:
    """Apply one pinned patch to tree; an already-patched tree is left alone. Returns the state found before."""
    verified_bytes(pin)
    found = state_of(pin, tree)
    if found is PatchState.APPLIED:
        return found
    if found is PatchState.DOES_NOT_APPLY:
        detail = _git_apply(tree, pin.path, "--check").stderr.strip().splitlines()
        raise PatchError(
            f"patch {pin.describe()} does not apply cleanly to {tree} ({'; '.join(detail[:3]) or 'git apply refused it'}); "
            f"nothing was changed: re-provision a pristine tree (`{COMFYUI_PROVISION_COMMAND}` after removing it), or "
            "rebase the patch onto the locked ComfyUI commit"
        )
    done = _git_apply(tree, pin.path)
    if done.returncode != 0:
        raise PatchError(f"patch {pin.describe()}: git apply failed on {tree}: {done.stderr.strip()[-500:]}")
    return found


def apply_all(pins: tuple[PatchPin, ...], tree: Path) -> list[tuple[PatchPin, PatchState]]:
    for pin in pins:  # every file is checked before the tree is touched
        verified_bytes(pin)
    return [(pin, apply_patch(pin, tree)) for pin in pins]


def patch_report(pins: tuple[PatchPin, ...], tree: Path) -> tuple[list[str], list[str]]:
    """(lines saying what is patched, problems) for `nodes verify`."""
    lines: list[str] = []
    problems: list[str] = []
    for pin in pins:
        try:
            state = state_of(pin, tree)
        except PatchError as error:
            problems.append(str(error))
            continue
        if state is PatchState.APPLIED:
            lines.append(f"ComfyUI patch {pin.describe()}: applied in {tree}")
        else:
            problems.append(f"ComfyUI patch {pin.describe()}: {state.value} in {tree}; run `{COMFYUI_PROVISION_COMMAND}` "
                            "(it applies the lock's patches to the provisioned tree)")
    return lines, problems


# -- the image: cog.yaml's build step carries the bytes (run steps cannot read the project's files) ----------------
def image_apply_step(pin: PatchPin, tree: str) -> str:
    """A shell step that writes the patch from its base64, checks the pinned sha256, and applies it to tree (an
    already-patched tree is left alone; one it does not fit fails the build)."""
    data = verified_bytes(pin)
    scratch = f"/tmp/{pin.name}"
    return (
        f"printf %s {base64.b64encode(data).decode()} | base64 -d > {scratch} && "
        f"echo '{pin.sha256}  {scratch}' | sha256sum -c --quiet - && "
        f"(git -C {tree} apply --reverse --check {scratch} 2>/dev/null || git -C {tree} apply {scratch}) && "
        f"git -C {tree} apply --reverse --check {scratch} && rm {scratch}"
    )
