"""`python -m comfy_runtime weights fetch|verify|lock` and `nodes install|verify|lock`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from comfy_runtime.settings import PROJECT_ROOT


def add_supply_commands(commands: argparse._SubParsersAction, *, weights: Callable, nodes: Callable) -> None:
    w = commands.add_parser("weights", help="weights.manifest: fetch, verify, pin",
                            description="The weight files of weights.manifest under HV_MODELS_DIR.")
    w_actions = w.add_subparsers(dest="action", required=True, metavar="ACTION")
    fetch = w_actions.add_parser(
        "fetch", help="download what is missing or broken (parallel, resumable, sha256-verified)",
        description="Download every weight that is missing or broken: parallel ranged connections, resumable, "
        "verified against its pin before it gets its final name.",
    )
    verify = w_actions.add_parser(
        "verify", help="full sha256 of every file (refreshes the boot-time records)",
        description="Hash every weight in full against its pin; refreshes the records the boot-time check reads.",
    )
    lock = w_actions.add_parser(
        "lock", help="fill in unpinned size/sha256/revision from the source (network)",
        description="Pin each unpinned entry in place: size, sha256 and the Hugging Face revision.",
    )
    for action in (fetch, verify, lock):
        action.add_argument("--manifest", type=Path, help="default: HV_WEIGHTS_MANIFEST")
        action.add_argument("--models-dir", type=Path, help="default: HV_MODELS_DIR")
        action.set_defaults(fn=weights)
    for action in (fetch, lock):
        action.add_argument("--connections", type=int, default=8, help="parallel ranged connections per file (default: 8)")
    for action in (fetch, verify):
        action.add_argument("--only", action="append", default=[], metavar="FILE", help="only this file name (repeatable)")
        action.add_argument("--all", action="store_true",
                            help="every file in the manifest (default: the configured model's, HV_WORKFLOW with "
                            "HV_IMAGE_TO_VIDEO and HV_UPSCALE; a manifest given with --manifest is taken whole)")

    n = commands.add_parser("nodes", help="custom_nodes.lock: install, verify, pin ComfyUI",
                            description="The custom nodes of custom_nodes.lock, at their full commits.")
    n_actions = n.add_subparsers(dest="action", required=True, metavar="ACTION")
    install = n_actions.add_parser(
        "install", help="clone each node at its full commit and install its pinned requirements",
        description="Clone each locked node into the custom_nodes folder at its full commit, prove HEAD, and pip "
        "install its pinned requirements.",
    )
    install.add_argument("--no-pip", action="store_true", help="skip installing the nodes' requirements")
    check = n_actions.add_parser("verify", help="check an install: HEAD, local changes, requirements, ComfyUI patches",
                                 description="Report a moved HEAD, local changes and missing or other-version requirements, "
                                 "and whether each pinned ComfyUI patch is applied.")
    pin = n_actions.add_parser(
        "lock", help="pin ComfyUI's tag to its commit and regenerate cog.yaml's install steps (network)",
        description="Resolve ComfyUI's tag to its commit (git ls-remote) and regenerate cog.yaml's install block.",
    )
    sync = n_actions.add_parser(
        "sync-cog-yaml", help="regenerate cog.yaml's install steps from the lock (offline)",
        description="Rewrite cog.yaml's ComfyUI and custom-node install block from custom_nodes.lock, offline.",
    )
    for action in (pin, sync):
        action.add_argument("--cog-yaml", type=Path, default=PROJECT_ROOT / "cog.yaml")
    for action in (install, check, pin, sync):
        action.add_argument("--lock", type=Path, help="default: HV_NODES_LOCK")
        action.set_defaults(fn=nodes)
    for action in (install, check):
        action.add_argument("--target", type=Path, help="custom_nodes folder (default: <ComfyUI>/custom_nodes)")


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 1


def _unknown_names(given: list[str], names: list[str]) -> str:
    """'' when every name given is one of `names`; else what is wrong, with the near names to use instead."""
    import difflib

    problems = []
    for name in (n for n in given if n not in names):
        near = difflib.get_close_matches(name, names, n=3, cutoff=0.4)
        problems.append(f"--only {name}: no such weight file" + (f"; near: {', '.join(near)}" if near else ""))
    if problems and not any("near:" in p for p in problems):
        problems.append(f"the files are: {', '.join(names)}")
    return "; ".join(problems)


def served_entries(settings, entries: list) -> list:
    """The manifest entries of the model this deployment serves (lazy mode fetches the same ones at setup)."""
    from comfy_runtime.graph.workflow import load_workflow
    from comfy_runtime.render.model_choice import served_workflows
    from comfy_runtime.supply.weights import required_entries

    base = load_workflow(settings.workflow, settings.workflows_dir)
    needed = {e.file for w in served_workflows(base, settings.image_to_video, settings.upscale)
              for e in required_entries(w.graph, entries)}
    return [e for e in entries if e.file in needed]


def run_weights(args: argparse.Namespace) -> int:
    from comfy_runtime.settings import Settings
    from comfy_runtime.supply.commands import WEIGHTS_FETCH_COMMAND
    from comfy_runtime.supply.manifest import load_manifest
    from comfy_runtime.supply.weights import (
        WeightsError,
        fetch_all,
        leftovers,
        lock_manifest,
        unpinned_warning,
        verify_all,
    )

    settings = Settings()
    manifest = args.manifest or settings.weights_manifest
    models_dir = args.models_dir or settings.models_dir
    only = getattr(args, "only", [])
    listed = load_manifest(manifest)
    unknown = _unknown_names(only, [e.file for e in listed])
    if unknown:
        print(f"error: {unknown} (in {manifest})", file=sys.stderr)
        return 2
    entries = [e for e in listed if not only or e.file in only]
    if args.action != "lock" and not getattr(args, "all", False) and not only and args.manifest is None:
        entries = served_entries(settings, entries)  # a manifest named with --manifest is taken whole
    try:
        if args.action == "lock":
            changed = lock_manifest(manifest, models_dir, connections=args.connections)
            print(f"pinned {len(changed)} entr{'y' if len(changed) == 1 else 'ies'} in {manifest}")
            return 0
        warning = unpinned_warning(entries)
        if warning:
            print(f"WARNING: {warning}", file=sys.stderr)
        if args.action == "fetch":
            for path in fetch_all(models_dir, entries, connections=args.connections):
                print(path)
            return 0
        problems = verify_all(models_dir, entries)
        for entry in entries:
            for path in leftovers(models_dir, entry):
                print(f"note: {path} is an interrupted download; `weights fetch` resumes it", file=sys.stderr)
        for problem in problems:
            print(problem.message(f"run `{WEIGHTS_FETCH_COMMAND}`"), file=sys.stderr)
        if not problems:
            pinned = sum(1 for e in entries if e.pinned)
            print(f"{pinned} pinned weight file(s) verified by full sha256 in {models_dir}; "
                  f"{len(entries) - pinned} unpinned present (not verifiable)")
        return 1 if problems else 0
    except WeightsError as error:
        return _fail(str(error))


def run_nodes(args: argparse.Namespace) -> int:
    from comfy_runtime.settings import Settings
    from comfy_runtime.supply.lockfile import load_lock
    from comfy_runtime.supply.nodes import (
        NodesError,
        install_all,
        lock_comfyui_commit,
        resolve_tag,
        sync_cog_yaml,
        verify_all,
    )
    from comfy_runtime.supply.patches import PatchError, patch_report

    settings = Settings()
    lock_path = args.lock or settings.nodes_lock
    try:
        lock = load_lock(lock_path)
        if args.action == "lock":
            commit = resolve_tag(lock.comfyui.repo, lock.comfyui.tag)
            lock_comfyui_commit(lock_path, commit)
            changed = sync_cog_yaml(args.cog_yaml, load_lock(lock_path))
            print(f"ComfyUI {lock.comfyui.tag} = {commit}; {args.cog_yaml} {'updated' if changed else 'unchanged'}")
            return 0
        if args.action == "sync-cog-yaml":
            changed = sync_cog_yaml(args.cog_yaml, lock)
            print(f"{args.cog_yaml} {'updated from' if changed else 'already matches'} {lock_path}")
            return 0
        target = getattr(args, "target", None) or _default_target(settings)
        if args.action == "install":
            for folder in install_all(lock, target, pip=not args.no_pip):
                print(folder)
            return 0
        problems = verify_all(lock, target)
        # The ComfyUI tree the custom_nodes folder sits in: what its pinned patches are checked against.
        tree = Path(target).parent
        if (tree / "nodes.py").is_file():
            patched, patch_problems = patch_report(lock.comfyui.patches, tree)
            problems += patch_problems
        else:
            patched = [f"ComfyUI patches not checked: {tree} (the folder above --target) is not a ComfyUI tree"]
        for line in patched:
            print(line)
        for problem in problems:
            print(problem, file=sys.stderr)
        if not problems:
            print(f"{len(lock.nodes)} custom node(s) and {len(lock.comfyui.patches)} ComfyUI patch(es) match "
                  f"{lock_path} in {Path(target).parent}")
        return 1 if problems else 0
    except (NodesError, PatchError) as error:
        return _fail(str(error))


def _default_target(settings) -> Path:
    from comfy_runtime.supply.comfyui_source import resolve_comfyui_path

    return resolve_comfyui_path(settings) / "custom_nodes"
