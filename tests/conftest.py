"""Session set-up: one in-process ComfyUI for the test process, models and outputs in tmp folders.

ComfyUI keeps global state, so a process boots it once; the session's settings (models folder with
the manifest's file names as placeholders, the test custom-node pack) are exported as HV_* variables
so that predict.py's Predictor, built in-process, reads the same ones.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from comfy_runtime.cog_schema import write_schema
from comfy_runtime.settings import Settings
from comfy_runtime.supply.manifest import load_manifest
from tests.support.paths import FIXTURE_CUSTOM_NODES


@pytest.fixture(scope="session")
def session_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hv")
    dirs = {"models": root / "models", "outputs": root / "outputs"}
    for path in dirs.values():
        path.mkdir()
    # Placeholders named as the manifest says: enough for ComfyUI to list them and validate the graph.
    for entry in load_manifest():
        target = dirs["models"] / entry.relative_path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(b"")
    return dirs


@pytest.fixture(scope="session")
def hv_env(session_dirs) -> dict[str, str]:
    """The HV_* variables every in-process component and every server the tests start get."""
    env = {
        "HV_MODELS_DIR": str(session_dirs["models"]),
        "HV_OUTPUT_DIR": str(session_dirs["outputs"]),
        "HV_DEVICE": "cpu",
        "HV_EXTRA_CUSTOM_NODES": json.dumps([str(FIXTURE_CUSTOM_NODES)]),
        "HV_WORKFLOW": "plumbing_video",
    }
    os.environ.update(env)
    write_schema()  # coglet validates inputs against it; keep it in step with predict.py
    return env


@pytest.fixture(scope="session")
def runtime(hv_env):
    from comfy_runtime.backends.embedded import EmbeddedRuntime
    from comfy_runtime.supply.comfyui_source import resolve_comfyui_path

    settings = Settings()
    rt = EmbeddedRuntime(
        comfyui_path=resolve_comfyui_path(settings),
        models_dir=settings.models_dir,
        work_dir=settings.output_dir / ".work",
        device="cpu",
        extra_custom_nodes=settings.extra_custom_nodes,
    )
    rt.start()
    yield rt
    rt.close()


@pytest.fixture(scope="session")
def schemas(runtime):
    return runtime.node_schemas()


# -- shared by several suites -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def pg():
    """A throwaway PostgreSQL on 127.0.0.1 for the module (local_servers/postgres_server.py), stopped after it."""
    from local_servers.postgres_server import PostgresServer

    with PostgresServer() as server:
        yield server


@pytest.fixture(scope="module")
def s3(request, tmp_path_factory):
    """moto's S3 server on 127.0.0.1 with the module's BUCKET created."""
    from local_servers.s3_server import MotoS3Server

    with MotoS3Server(tmp_path_factory.mktemp("moto") / "moto.log") as server:
        server.client().create_bucket(Bucket=request.module.BUCKET)
        yield server


@pytest.fixture(scope="module")
def webhooks():
    from local_servers.webhooks import WebhookReceiver

    receiver = WebhookReceiver()
    yield receiver
    receiver.close()


@pytest.fixture
def sigmas_seen(monkeypatch) -> list[list[float]]:
    """Records the sigmas each sampling run hands the real sampler (calls straight through)."""
    import comfy.samplers

    seen: list[list[float]] = []
    original = comfy.samplers.KSAMPLER.sample

    def recording(self, model_wrap, sigmas, *args, **kwargs):
        seen.append([float(s) for s in sigmas])
        return original(self, model_wrap, sigmas, *args, **kwargs)

    monkeypatch.setattr(comfy.samplers.KSAMPLER, "sample", recording)
    return seen
