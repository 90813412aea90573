"""The Makefile: `make help` lists the operator's targets, and no target is defined twice."""

import shutil
import subprocess

import pytest

from tests.helpers import PROJECT_ROOT

# Targets the README and the deploy docs tell people to run (others add theirs beside these).
DOCUMENTED = {"help", "setup", "test", "lint", "schema", "serve", "predict", "demo", "build", "push", "k8s-validate"}


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
