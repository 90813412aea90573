"""The Makefile: `make help` lists the operator's targets, and no target is defined twice."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.support.paths import PROJECT_ROOT

# The operator's targets (issue 7's list, plus help and demo); others may add theirs beside these.
DOCUMENTED = {
    "help", "setup", "test", "lint", "schema", "serve", "predict", "demo", "weights", "nodes", "bench", "build",
    "push", "k8s-validate",
}


@pytest.fixture(scope="module")
def make_help() -> subprocess.CompletedProcess:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    return subprocess.run(["make", "help"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60)


def test_help_lists_every_documented_target(make_help):
    assert make_help.returncode == 0, make_help.stderr
    listed = {line.split()[1] for line in make_help.stdout.splitlines() if line.strip().startswith("make ")}
    assert DOCUMENTED <= listed, f"missing from `make help`: {sorted(DOCUMENTED - listed)}"


def test_no_target_is_defined_twice(make_help):
    # GNU make only warns about a second recipe for the same target and silently keeps the last one.
    assert "overriding recipe" not in make_help.stderr, make_help.stderr


def test_push_refuses_to_run_without_a_model():
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    # The model check is the recipe's first line: nothing is built or pushed before it.
    done = subprocess.run(["make", "push", "model="], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "usage: make push model=<owner>/<model>" in done.stdout + done.stderr


@pytest.mark.parametrize("target", ["predict", "demo"])
def test_the_prompt_reaches_the_cli_exactly_as_typed(target, tmp_path):
    """`make predict prompt=...` hands the prompt to comfy_runtime's CLI unchanged: quotes, backticks and
    apostrophes are neither eaten nor run by the shell. PY is swapped for a script that records its
    arguments, and `-o setup` skips building the environment."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    recorder = tmp_path / "python"
    recorder.write_text(f"#!{sys.executable}\nimport json, sys\nprint(json.dumps(sys.argv[1:]))\n")
    recorder.chmod(0o755)
    pwned = tmp_path / "pwned"
    prompt = f'a "quoted" fox `touch {pwned}` $(touch {pwned}) it\'s; echo no'
    done = subprocess.run(
        ["make", "-s", target, "-o", "setup", f"PY={recorder}", f"prompt={prompt}"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr
    argv = json.loads(done.stdout.strip().splitlines()[-1])
    assert argv[:3] == ["-m", "comfy_runtime", "render"]
    assert argv[argv.index("--prompt") + 1] == prompt
    assert not pwned.exists()


@pytest.mark.parametrize("target,args", [("build", ["IMAGE=hv:test"]), ("push", ["model=o/m"])])
@pytest.mark.parametrize("baked", [True, False])
def test_baked_weights_are_built_and_pushed_as_separate_layers(target, args, baked, tmp_path):
    """A dry run (-n) of the real Makefile in a copy of the project's top level, with and without weights in
    ./models: cog gets --separate-weights exactly when weights are baked."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    for name in ("Makefile", "custom_nodes.lock", "requirements.txt", "requirements-dev.txt", "predict.py"):
        shutil.copy(PROJECT_ROOT / name, tmp_path / name)
    if baked:
        (tmp_path / "models" / "diffusion_models").mkdir(parents=True)
        (tmp_path / "models" / "diffusion_models" / "hunyuan_video_t2v_720p_bf16.safetensors").write_bytes(b"w")
    done = subprocess.run(["make", "-n", target, *args], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"})
    cog_lines = [line for line in done.stdout.splitlines() if line.startswith(f"cog {target} ")]
    assert done.returncode == 0 and len(cog_lines) == 1, done.stdout + done.stderr
    assert ("--separate-weights" in cog_lines[0]) is baked, cog_lines
def test_make_predict_passes_every_input_it_is_given(tmp_path):
    """Each input of job/params.py given as a make variable reaches the CLI as its flag, verbatim, and the CLI
    parses it to the value given; a name the CLI does not know is refused (exit 2), not dropped."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    from comfy_runtime.cli.main import build_parser
    from comfy_runtime.job.params import PARAMS, Choices, Grid, Range

    given = {}
    for param in PARAMS:
        if param.name == "prompt":
            continue
        rule = param.rule
        value = rule.values[-1] if isinstance(rule, Choices) else rule.choices[1] if isinstance(rule, Grid) else (
            param.kind(rule.le) if isinstance(rule, Range) else "x")
        given[param.name] = str(value)
    recorder = tmp_path / "python"
    recorder.write_text(f"#!{sys.executable}\nimport json, sys\nprint(json.dumps(sys.argv[1:]))\n")
    recorder.chmod(0o755)
    done = subprocess.run(
        ["make", "-s", "predict", "-o", "setup", f"PY={recorder}", "prompt=a fox",
         *[f"{name}={value}" for name, value in given.items()]],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr
    argv = json.loads(done.stdout.strip().splitlines()[-1])
    parsed = vars(build_parser().parse_args(argv[2:]))
    assert {name: str(parsed[name]) for name in given} == given
    assert parsed["prompt"] == "a fox"

    unknown = subprocess.run(
        ["make", "-s", "predict", "-o", "setup", f"PY={sys.executable}", "prompt=a fox", "num_framez=49"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60, check=False,
    )
    assert unknown.returncode != 0 and "unknown option --num-framez (did you mean --num-frames?)" in unknown.stderr, \
        unknown.stderr
