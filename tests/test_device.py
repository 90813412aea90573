"""HV_DEVICE=cuda (what the image sets) on a machine without a usable GPU: setup fails at once, naming the cause,
before any weight is fetched. Forced here on a CPU machine, where the cause is real: no NVIDIA driver."""

from __future__ import annotations

import hashlib

import pytest
import torch

from comfy_runtime.backends.device import DRIVER_FLOOR, DeviceError, cuda_unavailable_cause, require_cuda
from comfy_runtime.graph.workflow import WORKFLOWS_DIR
from local_servers.cog_server import CogServer
from local_servers.range_server import RangeServer

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine where CUDA is not usable")


def test_require_cuda_names_the_missing_driver_and_the_fix():
    with pytest.raises(DeviceError) as error:
        require_cuda()
    message = str(error.value)
    assert "HV_DEVICE=cuda" in message and "Found no NVIDIA driver" in message and "/dev/nvidiactl" in message
    assert f"built for CUDA {torch.version.cuda}" in message and f">= {DRIVER_FLOOR[torch.version.cuda.split('.')[0]]}" in message
    assert "--gpus all" in message and "HV_DEVICE=cpu" in message


def test_hidden_gpus_are_named_as_the_cause(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert "CUDA_VISIBLE_DEVICES='' hides every GPU" in cuda_unavailable_cause(torch)


@pytest.mark.cog_server
def test_the_cog_server_ends_setup_failed_before_fetching_weights(hv_env, tmp_path):
    data = b"w" * 4096
    served = tmp_path / "served"
    served.mkdir()
    (served / "vae.bin").write_bytes(data)
    with RangeServer(served) as weights_source:
        manifest = tmp_path / "weights.manifest"
        manifest.write_text(
            f'[[weight]]\nfolder = "vae"\nfile = "hunyuan_video_vae_bf16.safetensors"\nurl = "{weights_source.url}/vae.bin"\n'
            f'size = {len(data)}\nsha256 = "{hashlib.sha256(data).hexdigest()}"\n'
        )
        env = {
            **hv_env, "HV_DEVICE": "cuda", "HV_WORKFLOW": "hunyuan_t2v", "HV_WORKFLOWS_DIR": str(WORKFLOWS_DIR),
            "HV_MODELS_DIR": str(tmp_path / "models"), "HV_WEIGHTS_MANIFEST": str(manifest), "HV_WEIGHTS_MODE": "lazy",
        }
        with CogServer(env, tmp_path / "server.log") as server:
            body, seen = server.wait_for_status({"READY", "SETUP_FAILED"})
            assert body["status"] == "SETUP_FAILED", server.logs()
            assert "READY" not in seen
        logs = body["setup"]["logs"]
        assert "HV_DEVICE=cuda, but torch cannot use a GPU" in logs and "Found no NVIDIA driver" in logs, logs
        assert weights_source.requests == []  # lazy mode would have fetched: the device check came first
    assert not (tmp_path / "models" / "vae" / "hunyuan_video_vae_bf16.safetensors").exists()
