"""The CLI's conventions: each subcommand has its own help and flags, --version, exit codes 0/1/2, and the
`hunyuan-video` console script works from any folder once the project is installed into a venv."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest

from comfy_runtime import __version__
from comfy_runtime.cli.main import build_parser, main
from tests.support.paths import PROJECT_ROOT


def help_of(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args([*argv, "--help"])
    assert done.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize(("command", "has", "lacks"), [
    (("weights", "fetch"), ["--connections", "--only", "--models-dir"], ["--no-pip", "--cog-yaml", "--target"]),
    (("weights", "verify"), ["--only", "--manifest"], ["--connections", "--no-pip"]),
    (("weights", "lock"), ["--connections"], ["--only", "--no-pip"]),
    (("nodes", "install"), ["--no-pip", "--target", "--lock"], ["--connections", "--cog-yaml"]),
    (("nodes", "verify"), ["--target"], ["--no-pip", "--cog-yaml"]),
    (("nodes", "lock"), ["--cog-yaml"], ["--no-pip", "--target"]),
    (("render",), ["--prompt", "--num-frames", "--out", "--crf"], ["--connections", "--no-pip"]),
])
def test_each_subcommand_has_its_own_help_and_flags(capsys, command, has, lacks):
    text = help_of(capsys, *command)
    assert text.startswith(f"usage: hunyuan-video {' '.join(command)}"), text
    assert all(flag in text for flag in has), text
    assert not any(flag in text for flag in lacks), text


def test_version(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"hunyuan-video {__version__} (ComfyUI 0.3.75"), out


@pytest.mark.parametrize("argv", [["render"], ["weights"], ["weights", "fetch", "--no-pip"], ["nope"]])
def test_a_usage_error_exits_2(argv, capsys):
    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 2
    assert "usage: hunyuan-video" in capsys.readouterr().err


def test_refused_input_exits_2_naming_the_flag_before_comfyui_boots(capsys):
    assert main(["render", "--prompt", "a fox", "--width", "100"]) == 2
    err = capsys.readouterr().err
    assert "--width" in err and "a multiple of 16" in err and "Traceback" not in err


def test_a_failure_exits_1_with_one_line_naming_the_fix(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("HV_COMFYUI_PATH", str(tmp_path / "no-comfyui"))
    assert main(["render", "--prompt", "a fox"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not a ComfyUI checkout" in err[0] and "unset it" in err[0], err


def test_a_failed_check_exits_1(tmp_path, capsys):
    manifest = tmp_path / "weights.manifest"
    manifest.write_text('[[weight]]\nfolder = "vae"\nfile = "missing.safetensors"\nurl = "https://example.com/x"\n')
    assert main(["weights", "verify", "--manifest", str(manifest), "--models-dir", str(tmp_path)]) == 1
    assert "missing.safetensors" in capsys.readouterr().err


@pytest.fixture(scope="module")
def installed_venv(tmp_path_factory) -> tuple[Path, float]:
    """A throwaway venv with this tree installed as `make setup` installs it (editable, no deps). It reuses the
    test venv's packages through a .pth file instead of copying ~6 GB of torch, so it takes seconds."""
    venv = tmp_path_factory.mktemp("console-script") / "venv"
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site = Path(sysconfig.get_paths(vars={"base": str(venv), "platbase": str(venv)})["purelib"])
    (site / "shared-test-venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    started = time.perf_counter()
    install = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "-e", str(PROJECT_ROOT)], capture_output=True, text=True, timeout=300,
    )
    assert install.returncode == 0, install.stderr
    return venv, time.perf_counter() - started


def run_in(folder: Path, *argv: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HV_", "PYTHON"))}
    return subprocess.run(list(argv), cwd=folder, env=env, capture_output=True, text=True, timeout=120)


def test_the_console_script_works_from_any_folder(installed_venv, tmp_path):
    venv, install_seconds = installed_venv
    print(f"editable install into a throwaway venv: {install_seconds:.1f} s")
    script = venv / "bin" / "hunyuan-video"
    version = run_in(tmp_path, str(script), "--version")
    assert version.returncode == 0 and version.stdout.startswith(f"hunyuan-video {__version__}"), version
    fetch_help = run_in(tmp_path, str(script), "weights", "fetch", "--help")
    assert fetch_help.returncode == 0 and "--connections" in fetch_help.stdout and "--no-pip" not in fetch_help.stdout
    refused = run_in(tmp_path, str(script), "render", "--prompt", "a fox", "--num-frames", "50")
    assert refused.returncode == 2 and "--num-frames" in refused.stderr, refused
    # `python -m comfy_runtime` from outside the repository: the installed package, not the folder it runs in.
    module = run_in(tmp_path, str(venv / "bin" / "python"), "-m", "comfy_runtime", "--version")
    assert module.returncode == 0 and module.stdout.startswith("hunyuan-video"), module
