"""The real Cog server with the real predict.py: a broken supply chain fails setup before READY, and the
health check says which file or node and what fixes it."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess

import pytest

from comfy_runtime.graph.workflow import WORKFLOWS_DIR
from local_servers.cog_server import CogServer
from tests.support.doc_commands import ALL

pytestmark = pytest.mark.cog_server


def _setup_failure(env: dict[str, str], log_path, while_failed=None) -> str:
    with CogServer(env, log_path) as server:
        body, seen = server.wait_for_status({"READY", "SETUP_FAILED"})
        assert body["status"] == "SETUP_FAILED", server.logs()
        assert "READY" not in seen
        if while_failed is not None:
            while_failed(server)
        return body["setup"]["logs"]


def _readme_pipes_fail_loudly(server, folder) -> None:
    """The README's POST pipe against a server whose setup failed: it says why on stderr and fails, instead of
    exiting 0 with a 3-byte fox.mp4 (base64 of "null"); the README's setup-logs line then gives the cause."""
    if shutil.which("jq") is None or shutil.which("curl") is None:
        pytest.skip("curl and jq are needed")
    readme = [c.text.replace("localhost:5000", f"127.0.0.1:{server.port}") for c in ALL
              if c.page == "README.md" and c.words[0] == "curl"]
    (post,) = [text for text in readme if "POST" in text]
    (setup_logs,) = [text for text in readme if ".setup.logs" in text]
    done = subprocess.run(["bash", "-o", "pipefail", "-c", post], cwd=folder, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode != 0 and "Setup has not finished yet" in done.stderr, done
    assert (folder / "fox.mp4").stat().st_size == 0  # no bytes that look like a video
    cause = subprocess.run(["bash", "-o", "pipefail", "-c", setup_logs], capture_output=True, text=True, timeout=60)
    assert cause.returncode == 0 and "weights fetch" in cause.stdout, cause


def test_a_truncated_or_missing_pinned_weight_fails_setup_naming_the_file_and_the_fix(hv_env, tmp_path):
    vae = b"v" * 4096
    models = tmp_path / "models"
    (models / "vae").mkdir(parents=True)
    (models / "vae" / "hunyuan_video_vae_bf16.safetensors").write_bytes(vae[:1000])  # a download cut short
    manifest = tmp_path / "weights.manifest"
    manifest.write_text(
        '[[weight]]\nfolder = "vae"\nfile = "hunyuan_video_vae_bf16.safetensors"\nurl = "https://example.invalid/v"\n'
        f'size = {len(vae)}\nsha256 = "{hashlib.sha256(vae).hexdigest()}"\n\n'
        '[[weight]]\nfolder = "text_encoders"\nfile = "clip_l.safetensors"\nurl = "https://example.invalid/c"\n'
        f'size = 10\nsha256 = "{"c" * 64}"\n'
    )
    env = {
        **hv_env, "HV_WORKFLOW": "hunyuan_t2v", "HV_WORKFLOWS_DIR": str(WORKFLOWS_DIR), "HV_MODELS_DIR": str(models),
        "HV_WEIGHTS_MANIFEST": str(manifest), "HV_WEIGHTS_MODE": "off",
    }
    logs = _setup_failure(env, tmp_path / "server.log", lambda server: _readme_pipes_fail_loudly(server, tmp_path))
    assert "vae/hunyuan_video_vae_bf16.safetensors" in logs and "truncated: 1000 bytes" in logs and "4096" in logs, logs
    assert "text_encoders/clip_l.safetensors" in logs and "missing" in logs, logs
    assert "python -m comfy_runtime weights fetch" in logs, logs
    # the command fixes THIS install: it names the models folder and the manifest setup used
    assert f"HV_MODELS_DIR={models} HV_WEIGHTS_MANIFEST={manifest} python -m comfy_runtime weights fetch" in logs, logs


def test_a_locked_node_that_failed_to_import_fails_setup_naming_the_node(hv_env, tmp_path):
    nodes = tmp_path / "custom_nodes" / "hv_broken_node"
    nodes.mkdir(parents=True)
    (nodes / "__init__.py").write_text("import hv_dependency_that_is_not_installed  # noqa\nNODE_CLASS_MAPPINGS = {}\n")
    lock = tmp_path / "custom_nodes.lock"
    lock.write_text(
        (WORKFLOWS_DIR.parent / "custom_nodes.lock").read_text()
        + f'\n[[node]]\nname = "hv_broken_node"\nrepo = "https://example.invalid/hv_broken_node"\ncommit = "{"1" * 40}"\n'
    )
    workflows = tmp_path / "workflows"
    workflows.mkdir()
    graph = json.loads((WORKFLOWS_DIR / "plumbing_video.json").read_text())
    graph["900"] = {"class_type": "HvBrokenNode", "inputs": {}}
    (workflows / "plumbing_video.json").write_text(json.dumps(graph))
    shutil.copyfile(WORKFLOWS_DIR / "plumbing_video.bindings.toml", workflows / "plumbing_video.bindings.toml")
    extra = json.loads(hv_env["HV_EXTRA_CUSTOM_NODES"]) + [str(nodes.parent)]
    env = {
        **hv_env, "HV_WORKFLOWS_DIR": str(workflows), "HV_NODES_LOCK": str(lock),
        "HV_EXTRA_CUSTOM_NODES": json.dumps(extra),
    }
    logs = _setup_failure(env, tmp_path / "server.log")
    assert "hv_broken_node" in logs and "failed to import" in logs and "HvBrokenNode" in logs, logs
    assert "python -m comfy_runtime nodes verify" in logs, logs
