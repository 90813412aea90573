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


@pytest.mark.parametrize(("argv", "says", "help_of"), [
    (["render"], "the following arguments are required: --prompt", "hunyuan-video render"),
    (["weights"], "the following arguments are required: ACTION", "hunyuan-video weights"),
    (["weights", "fetch", "--no-pip"], "unknown option --no-pip", "hunyuan-video weights fetch"),
    (["nope"], "invalid choice: 'nope'", "hunyuan-video"),
    (["--bogus"], "unknown option --bogus", "hunyuan-video"),
    (["render", "--prompt", "x", "--colour", "red"], "unknown option --colour", "hunyuan-video render"),
    (["render", "--prompt", "x", "--width", "abc"], "argument --width: 'abc' is not a whole number",
     "hunyuan-video render"),
    (["render", "--prompt", "x", "--cache", "max"], "argument --cache: invalid choice: 'max' (choose from",
     "hunyuan-video render"),
    (["jobs", "submit", "--bogus"], "unknown option --bogus", "hunyuan-video jobs submit"),
])
def test_a_usage_error_is_one_line_naming_the_flag_and_the_commands_help_and_exits_2(argv, says, help_of, capsys):
    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"{help_of}: error: ") and says in err[0], err
    assert err[0].endswith(f"see `{help_of} --help`"), err


def test_a_near_miss_flag_gets_the_flag_it_resembles(capsys):
    with pytest.raises(SystemExit):
        main(["render", "--prompt", "x", "--num-frams", "49"])
    assert "unknown option --num-frams (did you mean --num-frames?)" in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "says"), [
    (["jobs", "submit", "--json", "{bad"], "--json is not JSON: Expecting property name enclosed in double quotes at "
                                           "line 1 column 2 (character 2)"),
    (["jobs", "submit", "--json", "[1]"], "--json is a JSON list, not an object"),
    (["jobs", "submit", "-i", "prompt=x"], "HV_FARM_DATABASE_URL is not set"),
    (["jobs", "status", "some-id"], "HV_FARM_DATABASE_URL is not set"),
    (["jobs", "token", "create", "--name", "alice"], "HV_FARM_DATABASE_URL is not set"),
    (["jobs", "token", "list"], "HV_FARM_DATABASE_URL is not set"),
])
def test_jobs_refusals_are_one_line_and_exit_2_without_a_database(argv, says, capsys, monkeypatch):
    monkeypatch.delenv("HV_FARM_DATABASE_URL", raising=False)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and says in err[0], err


@pytest.mark.parametrize("action", ["fetch", "verify"])
def test_an_unknown_weight_name_is_refused_listing_the_near_names(action, capsys):
    assert main(["weights", action, "--only", "nope.safetensors", "--only", "hunyuan_video_vae_bf16"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "--only nope.safetensors: no such weight file" in err[0], err
    assert "--only hunyuan_video_vae_bf16: no such weight file; near: hunyuan_video_vae_bf16.safetensors" in err[0], err


@pytest.mark.parametrize(("command", "says"), [
    (("worker",), ["HV_FARM_DATABASE_URL", "HV_S3_BUCKET", "docs/farm.md"]),
    (("gateway",), ["HV_FARM_DATABASE_URL", "default: 0.0.0.0, or HV_FARM_GATEWAY_HOST",
                    "default: 5000, or HV_FARM_GATEWAY_PORT"]),
    (("schema",), ["where to write the schema"]),
    (("jobs", "submit"), ["-v, --verbose"]),
    (("jobs", "cancel"), ["-v, --verbose"]),
])
def test_farm_and_schema_help_names_what_they_need(capsys, command, says):
    text = " ".join(help_of(capsys, *command).split())  # argparse wraps lines
    assert all(s in text for s in says), text


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


def test_render_copies_to_out_and_leaves_no_second_copy_in_outputs(hv_env, tmp_path):
    from tests.support.media import probe_video

    outputs = tmp_path / "outputs"
    env = {**os.environ, **hv_env, "HV_OUTPUT_DIR": str(outputs)}
    done = subprocess.run(
        [sys.executable, "-m", "comfy_runtime", "render", "--prompt", "x", "--width", "64", "--height", "64",
         "--num-frames", "5", "--fps", "8", "--out", str(tmp_path / "noise.mp4")],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == str(tmp_path / "noise.mp4")
    assert probe_video(tmp_path / "noise.mp4").frames == 5
    left = [p for p in outputs.rglob("*") if p.is_file() and ".work" not in p.relative_to(outputs).parts]
    assert left == [], left  # the run folder went with the copy


@pytest.mark.parametrize(("argv", "line"), [
    (["--steps", "0"], "error: --steps: steps=0 is out of range: use 1-100"),
    (["--seed", "-1"], "error: --seed: seed=-1 is out of range: use 0-4294967295"),
    (["--fps", "61"], "error: --fps: fps=61 is out of range: use 1-60"),
    (["--lora-strength", "2.5"], "error: --lora-strength: lora_strength=2.5 is out of range: use -2-2"),
])
def test_a_number_out_of_range_is_refused_in_one_line_with_the_range(capsys, argv, line):
    assert main(["render", "--prompt", "a fox", *argv]) == 2
    err = capsys.readouterr().err
    assert err.strip() == line, err
    assert "Input should be" not in err


@pytest.mark.parametrize(("workflow", "says", "not_says"), [
    ("hunyuan15_720p_t2v", "Classifier-free guidance scale", "embedded guidance, 6.0"),
    ("hunyuan_t2v", "this is its embedded guidance", "Classifier-free"),
])
def test_the_guidance_help_follows_the_configured_model(capsys, monkeypatch, workflow, says, not_says):
    monkeypatch.setenv("HV_WORKFLOW", workflow)
    text = " ".join(help_of(capsys, "render").split())  # argparse wraps the help text
    guidance = text[text.index("--guidance GUIDANCE Guidance"):text.index("--flow-shift FLOW_SHIFT Flow")]
    assert says in guidance and not_says not in guidance, guidance
