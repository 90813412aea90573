"""The HunyuanVideo 1.5 VAE at its real architecture, once in the suite: one image-to-video render through the
real VAELoader (encode of the start image, decode of the video), with the tiny i2v DiT.

1.26 B parameters with seeded random weights (tests/tiny_hunyuan15.py write_vae15); every other render uses the
stand-in (model_stand_ins.py), whose shapes this test holds against the real one.
"""

from __future__ import annotations

import base64
import json
import shutil
import time

import numpy as np
import pytest

from comfy_runtime.graph.workflow import WORKFLOWS_DIR
from comfy_runtime.render.plan import fit_image
from comfy_runtime.render.start_image import decode_image
from tests import test_hunyuan15
from tests.support.media import decode_frames, png_data_uri, probe_video
from tests.support.predictor import booted_predictor
from tests.support.tiny_hunyuan15 import BASE15 as BASE
from tests.support.tiny_hunyuan15 import derive_tiny_graph, write_tiny_family, write_tiny_models, write_vae15

REAL_VAE = "hv15_vae_random_full_architecture.safetensors"
dit_inputs = test_hunyuan15.dit_inputs  # the same recording fixture


@pytest.fixture(scope="module")
def real_vae_predictor(hv_env, session_dirs, runtime, tmp_path_factory):
    write_tiny_models(session_dirs["models"])
    vae_path = write_vae15(session_dirs["models"] / "vae" / REAL_VAE, seed=0)
    folder = write_tiny_family(tmp_path_factory.mktemp("hv15-real-vae"), "hunyuan15_720p_i2v")
    production = json.loads((WORKFLOWS_DIR / "hunyuan15_720p_i2v.json").read_text())
    graph = derive_tiny_graph(production, keep_vae=True)
    graph["12"]["inputs"]["vae_name"] = REAL_VAE
    (folder / "hunyuan15_720p_i2v.json").write_text(json.dumps(graph))
    predictor = booted_predictor({**hv_env, "HV_WORKFLOW": "hunyuan15_720p_i2v", "HV_WORKFLOWS_DIR": str(folder)})
    yield predictor
    predictor.service.close()
    vae_path.unlink()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def vae_encodes(monkeypatch) -> list[tuple]:
    """What the real VAE's encode is given and gives back during the render (calls straight through)."""
    import comfy.sd

    seen: list[tuple] = []
    original = comfy.sd.VAE.encode

    def recording(self, pixels):
        latent = original(self, pixels)
        seen.append((type(self), self.latent_channels, pixels.detach().clone(), latent.detach().clone()))
        return latent

    monkeypatch.setattr(comfy.sd.VAE, "encode", recording)
    return seen


def test_one_i2v_render_encodes_and_decodes_with_the_real_vae_architecture(real_vae_predictor, dit_inputs, vae_encodes):
    import comfy.latent_formats
    import comfy.sd
    import torch

    uri = png_data_uri(6)
    started = time.perf_counter()
    path = real_vae_predictor.predict(**{**BASE, "image": uri})
    seconds = time.perf_counter() - started
    video = probe_video(path)
    frames = np.stack(decode_frames(path))
    print(f"real-architecture 1.5 VAE: i2v 64x64x5, 2 steps, encode + decode in {seconds:.1f} s (CPU)")
    assert (video.frames, video.width, video.height) == (5, 64, 64)
    assert frames.std() > 0  # a decoded picture, not a constant
    ((vae_type, channels, pixels, latent),) = vae_encodes
    assert vae_type is comfy.sd.VAE and channels == 32 and latent.shape == (1, 32, 1, 4, 4)
    fitted = np.asarray(fit_image(decode_image(base64.b64decode(uri.split(",", 1)[1])), 64, 64), dtype=np.float32) / 255
    assert torch.allclose(pixels[0].float(), torch.from_numpy(fitted), atol=1 / 255 + 1e-6)  # the fitted image, as saved
    expected = comfy.latent_formats.HunyuanVideo15().process_in(latent)
    received = dit_inputs[0]["x"][:1, 32:64, :1]
    assert torch.allclose(received.float(), expected.float(), rtol=1e-3, atol=1e-3)
