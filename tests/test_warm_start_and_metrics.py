"""Warm start (the first prediction loads nothing) and the metrics a prediction records, on the tiny real DiT."""

from __future__ import annotations

import pytest

from local_servers.cog_server import CogServer
from predict import Predictor
from tests.support.tiny_hunyuan import TINY_DIT_NAME, write_tiny_dit, write_tiny_workflows
from tests.support.tiny_lora import write_tiny_lora
from tests.support.tiny_renders import BASE


@pytest.fixture(scope="module")
def tiny_env(hv_env, session_dirs, runtime, tmp_path_factory) -> dict[str, str]:
    write_tiny_dit(session_dirs["models"] / "diffusion_models" / TINY_DIT_NAME, seed=0)
    write_tiny_lora(session_dirs["models"] / "loras" / "metrics_kohya.safetensors", "kohya", seed=2)
    workflows = write_tiny_workflows(tmp_path_factory.mktemp("tiny-workflows"))
    # Text-to-video only: the sibling image-to-video workflow would need a tiny i2v DiT these tests do not write.
    return {**hv_env, "HV_WORKFLOW": "hunyuan_t2v", "HV_WORKFLOWS_DIR": str(workflows), "HV_IMAGE_TO_VIDEO": "false"}


@pytest.fixture
def model_loads(monkeypatch) -> list[str]:
    """Every model file ComfyUI reads (its loaders all go through comfy.utils.load_torch_file); calls straight through."""
    import comfy.utils

    loads: list[str] = []
    original = comfy.utils.load_torch_file

    def counting(path, *args, **kwargs):
        loads.append(str(path))
        return original(path, *args, **kwargs)

    monkeypatch.setattr(comfy.utils, "load_torch_file", counting)
    return loads


def _setup(env: dict[str, str], warm: bool) -> Predictor:
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {**env, "HV_WARM_START": "true" if warm else "false"}.items():
            patch.setenv(name, value)
        predictor = Predictor()
        predictor.setup()
    return predictor


@pytest.mark.parametrize("warm", [True, False])
def test_with_warm_start_the_first_prediction_loads_no_model(tiny_env, runtime, model_loads, capsys, warm):
    predictor = _setup(tiny_env, warm)
    try:
        during_setup = list(model_loads)
        setup_logs = capsys.readouterr().out
        model_loads.clear()
        predictor.predict(**BASE)
        during_first = list(model_loads)
    finally:
        predictor.service.close()
    dit_loads = [path for path in during_first if path.endswith(TINY_DIT_NAME)]
    print(f"warm start {warm}: loads in setup {len(during_setup)}, in the first prediction {len(during_first)}")
    if warm:
        assert any(path.endswith(TINY_DIT_NAME) for path in during_setup)
        assert "warm start: weights loaded in" in setup_logs
        assert during_first == []
    else:
        assert during_setup == [] and len(dit_loads) == 1


@pytest.mark.cog_server
def test_a_prediction_records_its_metrics_in_the_cog_response(tiny_env, tmp_path):
    with CogServer({**tiny_env, "HV_WARM_START": "true"}, tmp_path / "server.log") as server:
        body, _ = server.wait_for_status({"READY", "SETUP_FAILED"})
        assert body["status"] == "READY", server.logs()
        assert "warm start: weights loaded in" in server.logs()
        response = server.predict({**BASE, "steps": 12, "seed": 99, "cache": "fastest",
                                   "lora_url": "metrics_kohya.safetensors", "lora_strength": 0.7})
        assert response.status_code == 200, response.text
        result = response.json()
    assert result["status"] == "succeeded", result
    metrics = result["metrics"]
    print(f"metrics: {metrics}")
    assert (metrics["seed"], metrics["steps"], metrics["cache"]) == (99, 12, "fastest")
    assert 0 < metrics["cache_steps_skipped"] < 12
    assert metrics["lora"]["applied_layers"] == metrics["lora"]["total_layers"] == 6 and metrics["lora"]["strength"] == 0.7
    timings = metrics["timings"]
    assert {"load", "text", "sample", "decode", "encode", "upload", "total", "lora_fetch"} <= set(timings)
    assert timings["sample"] > 0 and timings["total"] >= timings["sample"] + timings["encode"]
