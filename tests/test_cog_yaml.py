"""cog.yaml cannot be built here (no Docker, no network): check what can be checked offline.
It parses, it uses only keys cog knows, every file it names exists, and its pins equal the lock's and
the requirements'."""

from __future__ import annotations

import fnmatch
import importlib.util
import inspect
import re
import shutil
import tomllib
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from cog import BasePredictor

from comfy_runtime.job.params import PARAMS
from comfy_runtime.settings import env_names
from comfy_runtime.supply.lockfile import NodePin, load_lock
from comfy_runtime.supply.nodes import (
    COG_BEGIN,
    COG_END,
    IMAGE_COMFYUI_PATH,
    cog_run_steps,
    render_cog_block,
    sync_cog_yaml,
)
from tests.support.paths import PROJECT_ROOT

COG_YAML = PROJECT_ROOT / "cog.yaml"
# cog.yaml's keys per cog's config schema (pkg/config/data/config_schema_v1.0.json) and docs/yaml.md, cog 0.23.
TOP_KEYS = {"build", "concurrency", "environment", "image", "model", "predict", "run", "train", "weights"}
BUILD_KEYS = {
    "cuda", "cudnn", "gpu", "pre_install", "python_packages", "python_requirements", "python_version", "run",
    "sdk_version", "system_packages",
}
# Deprecated in cog 0.23 (its checkDeprecatedFields): each with what replaces it.
DEPRECATED = {"predict": "run", "concurrency": "@cog.concurrent", "python_packages": "python_requirements",
              "pre_install": "build.run"}


@pytest.fixture(scope="module")
def cog() -> dict:
    return yaml.safe_load(COG_YAML.read_text())


def pins(path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.\[\]-]+)==([^\s;#]+)", line.strip())
        if match:
            found[match.group(1).split("[")[0].lower()] = match.group(2)
    return found


def test_it_parses_with_known_keys_only(cog):
    assert set(cog) <= TOP_KEYS, set(cog) - TOP_KEYS
    assert set(cog["build"]) <= BUILD_KEYS, set(cog["build"]) - BUILD_KEYS
    assert cog["build"]["gpu"] is True and re.fullmatch(r"\d+\.\d+", cog["build"]["cuda"])
    assert not ("python_packages" in cog["build"] and "python_requirements" in cog["build"])  # cog allows one
    used = set(cog) | set(cog["build"])
    assert not used & set(DEPRECATED), {key: DEPRECATED[key] for key in used & set(DEPRECATED)}


def test_python_is_the_one_ci_uses(cog):
    requires = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert cog["build"]["python_version"] == "3.11" and ">=3.11" in requires and "<3.12" in requires


def test_every_file_it_names_exists(cog):
    requirements = PROJECT_ROOT / cog["build"]["python_requirements"]
    assert requirements.is_file()
    module, _, cls = cog["run"].partition(":")
    assert (PROJECT_ROOT / module).is_file() and f"class {cls}(" in (PROJECT_ROOT / module).read_text()
    for needed in ("weights.manifest", "custom_nodes.lock", "workflows", "comfy_runtime", module, requirements.name):
        assert (PROJECT_ROOT / needed).exists(), needed


def test_the_build_context_keeps_what_the_image_needs():
    ignored = [line.strip() for line in (PROJECT_ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    for needed in ("predict.py", "comfy_runtime", "workflows", "weights.manifest", "custom_nodes.lock",
                   "requirements.txt", "models", "models/vae/x.safetensors", "models/.verified/vae/x.safetensors.json"):
        hits = [p for p in ignored if fnmatch.fnmatch(needed, p) or fnmatch.fnmatch(needed, p.removeprefix("**/"))]
        assert not hits, f"{needed} is excluded from the image by {hits}"
    assert fnmatch.fnmatch("models/vae/x.safetensors.partial", next(p for p in ignored if p.endswith(".partial")))


def test_requirements_are_pinned_and_cog_is_the_tested_sdk(cog):
    runtime = (PROJECT_ROOT / "requirements.txt").read_text().splitlines()
    lines = [line.strip() for line in runtime if line.strip() and not line.strip().startswith("#")]
    assert lines and all("==" in line for line in lines), [line for line in lines if "==" not in line]
    # cog installs its own SDK (sdk_version); a cog pin in requirements.txt would fight it.
    assert "cog" not in pins(PROJECT_ROOT / "requirements.txt") and "coglet" not in pins(PROJECT_ROOT / "requirements.txt")
    assert cog["build"]["sdk_version"] == pins(PROJECT_ROOT / "requirements-dev.txt")["cog"]


def test_install_steps_equal_the_lock(cog):
    text = COG_YAML.read_text()
    assert render_cog_block(load_lock()) in text, "cog.yaml is out of step with custom_nodes.lock: run `python -m comfy_runtime nodes sync-cog-yaml`"
    steps = cog["build"]["run"]
    lock = load_lock()
    assert [s for s in steps if s in cog_run_steps(lock)] == cog_run_steps(lock)
    install = cog_run_steps(lock)[1]
    assert f"--workspace {IMAGE_COMFYUI_PATH} install --url {lock.comfyui.repo} --version nightly --commit {lock.comfyui.commit} " in install
    assert "exit 1" not in text  # no deliberate build failure left
    assert lock.comfyui.version in lock.comfyui.tag


def test_pget_is_installed_from_a_pinned_release_where_the_fetch_finds_it(cog):
    """download.py hands transfers to `pget` when shutil.which finds it: the image must put a pinned release
    of it on PATH under that name, executable, and a failed download must fail the build (curl -f), not
    leave an HTML error page where the binary should be."""
    installs = [step for step in cog["build"]["run"] if "replicate/pget/releases" in step]
    assert len(installs) == 1, installs
    (step,) = installs
    url = re.search(r"https://github\.com/replicate/pget/releases/download/(\S+)/pget_linux_x86_64", step)
    assert url and re.fullmatch(r"v\d+\.\d+\.\d+", url.group(1)), f"pin a release tag, not latest: {step}"
    assert re.search(r"curl -\w*f\w* ", step), f"curl must fail on an HTTP error: {step}"
    target = re.search(r" -o (\S+) ", step)
    assert target and Path(target.group(1)).name == "pget", step
    assert Path(target.group(1)).parent.as_posix() in {"/usr/local/bin", "/usr/bin"}, "on the image's PATH"
    assert f"chmod +x {target.group(1)}" in step


def test_the_image_environment_is_settings_the_code_reads(cog):
    env = dict(item.split("=", 1) for item in cog["environment"])
    assert set(env) <= set(env_names().values())
    assert env["HV_COMFYUI_PATH"] == IMAGE_COMFYUI_PATH
    assert env.get("HV_WEIGHTS_MODE", "lazy") in {"bake", "lazy", "off"}
    assert env["HV_DEVICE"] == "cuda"  # a GPU image must not fall back to the CPU (tests/test_device.py)


def cuda_of_torch_pin(pin: str, installed_version: str, installed_cuda: str | None) -> str | None:
    """The CUDA a requirements.txt torch pin installs: its +cuXYZ local version, else what the index serves for
    it, which is the installed build when the installed torch is that pin (make setup installs requirements.txt)."""
    base, _, local = pin.partition("+")
    if local.startswith("cu"):
        return f"{local[2:-1]}.{local[-1]}"
    if local == "cpu":
        return None
    assert installed_version.split("+")[0] == base, f"installed torch {installed_version} is not the pin {pin}: make setup"
    return installed_cuda


def test_the_torch_pin_and_cog_yaml_agree_on_cuda(cog):
    import torch

    pin = pins(PROJECT_ROOT / "requirements.txt")["torch"]
    assert cuda_of_torch_pin(pin, torch.__version__, torch.version.cuda) == cog["build"]["cuda"], (
        f"requirements.txt's torch=={pin} is a CUDA {torch.version.cuda} build, cog.yaml says cuda "
        f"{cog['build']['cuda']}: change them together (docs/image.md)"
    )
    # CI reaches PyPI only: an index that it cannot reach would leave CI testing another torch than the image runs.
    assert "index-url" not in (PROJECT_ROOT / "requirements.txt").read_text()
    docs = (PROJECT_ROOT / "docs" / "image.md").read_text()
    assert f"CUDA {cog['build']['cuda']}" in docs and "580" in docs  # the decision and the driver floor, written down


def test_a_disagreeing_torch_pin_is_caught():
    assert cuda_of_torch_pin("2.14.1+cu128", "2.14.1+cu130", "13.0") == "12.8"
    assert cuda_of_torch_pin("2.14.1", "2.14.1+cu130", "13.0") == "13.0"
    assert cuda_of_torch_pin("2.14.1+cpu", "2.14.1+cu130", "13.0") is None
    with pytest.raises(AssertionError, match="make setup"):
        cuda_of_torch_pin("2.15.0", "2.14.1+cu130", "13.0")


def test_an_unpinned_comfyui_cannot_build(tmp_path):
    lock = replace(load_lock(), comfyui=replace(load_lock().comfyui, commit=""))
    steps = cog_run_steps(lock)
    assert len(steps) == 1 and "exit 1" in steps[0] and "nodes lock" in steps[0]


def test_nodes_lock_regenerates_the_block_with_pinned_nodes(tmp_path):
    copy = tmp_path / "cog.yaml"
    shutil.copyfile(COG_YAML, copy)
    commit = "a" * 40
    node = NodePin(name="ComfyUI-Example", repo="https://github.com/o/ComfyUI-Example", commit="b" * 40,
                   requirements=("somepkg==1.2.3",))
    lock = replace(load_lock(), comfyui=replace(load_lock().comfyui, commit=commit), nodes=(node,))
    assert sync_cog_yaml(copy, lock) is True
    assert sync_cog_yaml(copy, lock) is False  # idempotent
    steps = yaml.safe_load(copy.read_text())["build"]["run"]
    assert any(f'rev-parse HEAD)" = "{commit}"' in s and f"--commit {commit} " in s for s in steps)
    assert any(f"{IMAGE_COMFYUI_PATH}/custom_nodes/ComfyUI-Example" in s and node.commit in s for s in steps)
    assert "pip install --no-cache-dir 'somepkg==1.2.3'" in steps
    assert copy.read_text().count(COG_BEGIN) == 1 and copy.read_text().count(COG_END) == 1


def test_the_run_pointer_names_a_predictor_whose_inputs_are_the_declared_ones():
    # What cog's `run:` pointer loads, importable from the project root, with one keyword per declared input.
    file_name, class_name = yaml.safe_load(COG_YAML.read_text())["run"].split(":")
    spec = importlib.util.spec_from_file_location("predict_under_test", PROJECT_ROOT / file_name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    predictor = getattr(module, class_name)
    assert issubclass(predictor, BasePredictor)
    keywords = [name for name in inspect.signature(predictor.predict).parameters if name != "self"]
    assert keywords == [param.name for param in PARAMS], keywords
