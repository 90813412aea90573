"""Every command in README.md and docs/*.md runs as written, or (where it needs a GPU, weights, Docker or the
network) names things that exist: make targets, CLI subcommands and flags, inputs, files.

Commands come from the code blocks (indented or fenced) and from inline code that starts with `make `,
`hunyuan-video ` or `python -m comfy_runtime `. A code line whose program no checker knows fails the test:
a new kind of command gets a checker here, it is not skipped silently.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from comfy_runtime.cli.main import build_parser
from comfy_runtime.job.params import BY_NAME
from tests.support.doc_commands import ALL, cli_args
from tests.support.paths import PROJECT_ROOT

SERVED = ("curl",)  # run for real against the Cog server in tests/test_cog_server.py
OTHER = ("make", "cog", "cog-safe-push", "kubectl", ".venv/bin/python", "export")
GPU_KIT = ("python", "-m", "bench.gpu_kit")


def test_commands_are_found_and_each_has_a_checker():
    assert len(ALL) > 20, ALL
    unknown = [str(c) for c in ALL if cli_args(c) is None and c.words[0] not in SERVED + OTHER + ("bash",)
               and tuple(c.words[:3]) != GPU_KIT]
    assert unknown == [], f"commands no checker here knows (add one): {unknown}"


@pytest.mark.parametrize("command", [c for c in ALL if cli_args(c) is not None], ids=str)
def test_cli_commands_parse_and_help_runs(command, capsys):
    argv = cli_args(command)
    if argv and argv[-1] in ("--help", "--version"):
        with pytest.raises(SystemExit) as done:
            build_parser().parse_args(argv)
        assert done.value.code == 0
        assert capsys.readouterr().out.strip()
    else:
        build_parser().parse_args(argv)  # a usage error exits 2 and fails the test


@pytest.mark.parametrize("command", [c for c in ALL if c.words[0] == "make"], ids=str)
def test_make_commands_name_targets_that_exist(command):
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    words = command.words[1:]
    if any(w.startswith("PYTHON=") for w in words):
        words = [w for w in words if not w.startswith("PYTHON=")] or ["setup"]
    # -n prints the recipe and runs nothing; -o keeps it from planning a venv rebuild around the shared one.
    done = subprocess.run(["make", "-n", "-o", ".venv/.installed", *words], cwd=PROJECT_ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "No rule to make target" not in done.stderr


@pytest.mark.parametrize("command", [c for c in ALL if c.words[0] == "cog"], ids=str)
def test_cog_commands_use_real_inputs(command):
    words = command.words
    assert words[1] in {"predict", "login", "build", "push"}, command
    if words[1] == "predict":
        inputs = [words[i + 1] for i, w in enumerate(words) if w == "-i"]
        assert inputs, command
        for given in inputs:
            name, value = given.split("=", 1)
            assert name in BY_NAME, f"{command}: no input named {name}"
            BY_NAME[name].kind(value)


@pytest.mark.parametrize("command", [c for c in ALL if c.words[0] in ("cog-safe-push", "kubectl", ".venv/bin/python")
                                     and cli_args(c) is None], ids=str)
def test_files_other_commands_name_exist(command):
    words = command.words
    if words[0] == "kubectl":
        assert words[1:3] == ["apply", "-k"] and (PROJECT_ROOT / words[3] / "kustomization.yaml").is_file(), command
    elif words[0] == "cog-safe-push":
        assert (PROJECT_ROOT / words[words.index("--config") + 1]).is_file(), command
    else:
        assert (PROJECT_ROOT / words[1]).is_file(), command


@pytest.mark.parametrize("command", [c for c in ALL if tuple(c.words[:3]) == GPU_KIT], ids=str)
def test_gpu_kit_commands_parse_with_the_kits_parser(command):
    from bench.gpu_kit.kit import parse

    parse(command.words[3:])  # a usage error exits 2 and fails the test


@pytest.mark.parametrize("command", [c for c in ALL if c.words[0] == "bash"], ids=str)
def test_scripts_the_docs_run_exist(command):
    assert (PROJECT_ROOT / command.words[1]).is_file(), command
