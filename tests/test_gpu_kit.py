"""The GPU kit (bench/gpu_kit) at tiny scale, on a CPU, the way the lent GPU machine would run it.

The full-scale run needs a GPU; everything it runs is run here at tiny scale by the same code: the weights
written tensor by tensor, the boot check of the product passing on them, the renders through VideoService,
ComfyUI's own executor on the same graph, the EasyCache and fp8 variants (torch.compile's graph is validated,
not compiled, on a CPU), the FLOP count, the JSON. The run happens in a subprocess that can import only what
the lent machine has plus what the kit's payload brings, with the ComfyUI unpacked from the payload's archive.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.gpu_kit import families, payload
from bench.gpu_kit.flops import Tokens, forward_flops, image_tokens
from bench.gpu_kit.models import (
    TINY_DIT_CONFIG,
    check_detection,
    dit_shapes,
    parameter_count,
    random_tensor,
    vae_shapes,
    write_streamed,
)
from tests.support.lent_machine_site import build_lent_site

REPO = Path(__file__).resolve().parent.parent
LENT_MACHINE = REPO / "tests" / "support" / "lent_machine"


# -- the models are the real architectures, as ComfyUI detects them --------------------------------------------


@pytest.mark.parametrize("family", families.FAMILIES, ids=lambda f: f.name)
@pytest.mark.parametrize("scale", ["tiny", "full"])
def test_each_family_dit_is_detected_by_comfyui_with_its_config(runtime, family, scale):
    shapes = dit_shapes(family.dit[scale])  # full size on the meta device: shapes only
    detected = check_detection(family.dit[scale], shapes, family.detected_as)
    assert detected["hidden_size"] == family.dit[scale]["hidden_size"]
    if scale == "full":
        expected = 12.8e9 if family.name == "hunyuan_video" else 8.3e9
        print(f"{family.label}: {parameter_count(shapes) / 1e9:.2f} B parameters")
        assert abs(parameter_count(shapes) - expected) / expected < 0.03


def test_a_wrong_config_is_refused_by_the_detection_check(runtime):
    without_vector = dict(TINY_DIT_CONFIG, vec_in_dim=None)  # what makes ComfyUI take it for HunyuanImage 2.1
    with pytest.raises(ValueError, match="HunyuanImage21"):
        check_detection(without_vector, dit_shapes(without_vector), "HunyuanVideo")


def test_the_vae_architectures_come_from_comfyui(runtime):
    v1 = vae_shapes(families.V1_VAE_KEYS)
    assert v1["decoder.conv_in.conv.weight"] == (512, 16, 3, 3, 3)
    assert 2.0e8 < parameter_count(v1) < 3.0e8  # ComfyUI's fixed HunyuanVideo VAE, ~246M


# -- the FLOP count ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("config,byt5_tokens", [
    (TINY_DIT_CONFIG, 0),
    (dict(TINY_DIT_CONFIG, hidden_size=256, num_heads=2, depth=2, depth_single_blocks=3), 0),
    (families.V15_TINY, 7),
], ids=["v1-tiny", "v1-wider-deeper", "v15-tiny-byt5"])
def test_the_derived_flop_count_matches_torch_flop_counter_on_a_real_forward(runtime, config, byt5_tokens):
    import comfy.ops
    import torch
    from comfy.ldm.hunyuan_video.model import HunyuanVideo
    from torch.utils.flop_counter import FlopCounterMode

    from bench.gpu_kit.models import config_for_tree

    torch.manual_seed(0)
    model = HunyuanVideo(operations=comfy.ops.manual_cast, **config_for_tree(config))
    latent = (3, 8, 8)
    x = torch.randn(1, config["in_channels"], *latent)
    kwargs = {"y": torch.randn(1, 768)} if config["vec_in_dim"] else {}
    if config["guidance_embed"]:
        kwargs["guidance"] = torch.tensor([6.0])
    if byt5_tokens:
        kwargs["txt_byt5"] = torch.randn(1, byt5_tokens, 1472)
    text_tokens = 11
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x, torch.tensor([500.0]), torch.randn(1, text_tokens, config["context_in_dim"]), **kwargs)
    tokens = Tokens(image=image_tokens(latent, config["patch_size"]), llm_text=text_tokens, byt5=byt5_tokens)
    derived = forward_flops(dit_shapes(config), config["hidden_size"], tokens)
    print(f"derived {derived:.4g} FLOPs, torch's counter {counter.get_total_flops():.4g}")
    assert derived == pytest.approx(counter.get_total_flops(), rel=1e-3)



def test_full_size_flops_match_the_hand_count_of_the_13b_blocks(runtime):
    """v1 at 848x480x73: 19x60x106 latent -> 30210 image tokens. By hand: a double block's image stream has
    12 h^2 of per-token weights (qkv 3, proj 1, MLP 8) on the image tokens, its text stream the same on the text
    tokens; a single block 12 h^2 (linear1 7, linear2 5) on all L tokens; each of the 60 blocks attends over L
    (4 L^2 h). The modulation weights see one vector, so they barely count. Embedders and the final layer are
    the rest, well under 1%."""
    config = families.V1_FULL
    h, n_img, n_txt = config["hidden_size"], 30210, 20
    tokens = Tokens(image=image_tokens((19, 60, 106), config["patch_size"]), llm_text=n_txt)
    flops = forward_flops(dit_shapes(config), h, tokens)
    joint = n_img + n_txt
    by_hand = 2 * 12 * h**2 * (20 * n_img + 20 * n_txt + 40 * joint) + 60 * 4 * joint**2 * h
    print(f"HunyuanVideo 13B, 848x480x73: {flops / 1e15:.3f} PFLOP per step ({tokens.image} image tokens)")
    assert tokens.image == n_img
    assert flops == pytest.approx(by_hand, rel=0.01)


def test_an_unknown_weight_is_an_error_not_a_silent_miscount():
    with pytest.raises(ValueError, match="no FLOP rule"):
        forward_flops({"some_new_block.proj.weight": (8, 8)}, 8, Tokens(image=4, llm_text=2))


# -- the weights file --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_streamed_weights_read_back_as_the_drawn_tensors_and_the_hash_is_the_files(tmp_path, dtype):
    import torch
    from safetensors.torch import load_file

    shapes = {"blocks.0.linear.weight": (64, 48), "blocks.0.linear.bias": (64,), "blocks.0.norm.weight": (48,),
              "img_in.proj.weight": (16, 4, 1, 2, 2)}
    written = write_streamed(tmp_path / "w.safetensors", shapes, dtype=dtype, seed=7)
    loaded = load_file(str(written.path))
    generator = torch.Generator().manual_seed(7)
    for name, shape in shapes.items():
        expected = random_tensor(name, shape, generator, "cpu").to(getattr(torch, dtype))
        assert loaded[name].dtype == getattr(torch, dtype) and tuple(loaded[name].shape) == shape
        assert torch.equal(loaded[name], expected), name
    assert written.sha256 == hashlib.sha256(written.path.read_bytes()).hexdigest()
    assert written.size == written.path.stat().st_size and written.parameters == 64 * 48 + 64 + 48 + 256
    assert not list(tmp_path.glob("*.partial"))
    # 1/sqrt(fan_in): matrices near unit output scale; norm scales near 1, biases near 0.
    assert float(loaded["blocks.0.linear.weight"].float().std()) == pytest.approx(48**-0.5, rel=0.1)
    assert float(loaded["blocks.0.norm.weight"].float().mean()) == pytest.approx(1.0, abs=0.05)


# -- the payload and the lent machine ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def unpacked(tmp_path_factory, hv_env):
    """The payload as a call would carry it (ComfyUI packed by the real function), unpacked as there."""
    from comfy_runtime.settings import Settings
    from comfy_runtime.supply.comfyui_source import resolve_comfyui_path

    root = tmp_path_factory.mktemp("payload")
    archive = payload.pack_comfyui(resolve_comfyui_path(Settings()), root / "carried" / "comfyui.tar.xz")
    (root / "carried" / "wheels").mkdir()
    return {"archive": archive, "carried": root / "carried", **payload.unpack(root / "carried", root / "there")}


def test_the_carried_payload_fits_one_call(unpacked):
    sizes = payload.planned_bytes(unpacked["archive"])
    print(f"payload: {json.dumps(sizes)} ({sizes['total'] / (1 << 20):.1f} MiB of {payload.LIMIT_BYTES >> 20} MiB)")
    assert sizes["total"] < payload.LIMIT_BYTES
    assert sizes["comfyui.tar.xz"] < 8 << 20  # 25 MB of ComfyUI, packed
    assert not {"av", "cog"} & payload.PAYLOAD_MODULES  # what the kit runs without there


def test_unpack_extracts_comfyui_and_only_the_wheels_whose_modules_are_missing(unpacked, tmp_path):
    comfyui = Path(unpacked["comfyui"])
    assert (comfyui / "nodes.py").is_file() and (comfyui / "comfy" / "ldm" / "hunyuan_video" / "model.py").is_file()
    assert not (comfyui / "tests").exists()
    assert set(unpacked["present"]) == {w.pin for w in payload.WHEELS}  # this venv has them all: nothing shadowed
    import zipfile

    wheels = unpacked["carried"] / "wheels"
    with zipfile.ZipFile(wheels / "gpukit_probe-1.0-py3-none-any.whl", "w") as wheel:
        wheel.writestr("gpukit_probe/__init__.py", "VALUE = 42\n")
    probe = payload.Wheel("gpukit-probe==1.0", ("gpukit_probe",), 0, "")
    done = payload.unpack(unpacked["carried"], tmp_path, wheels=[probe])
    assert done["extracted"] == ["gpukit-probe==1.0"]
    check = subprocess.run([sys.executable, "-c", "import gpukit_probe; print(gpukit_probe.VALUE)"],
                           env={**os.environ, "PYTHONPATH": done["site"]}, capture_output=True, text=True)
    assert check.stdout.strip() == "42", check.stderr


def report_missing(results: Path) -> list[str]:
    return json.loads(results.read_text())["machine"]["missing"]


def test_the_kit_runs_at_tiny_scale_with_only_what_the_lent_machine_has(unpacked, tmp_path):
    work = tmp_path / "work"
    results = tmp_path / "gpu_kit.json"
    lent_site = build_lent_site(tmp_path / "lent-site", payload.LENT_MACHINE_MODULES | payload.PAYLOAD_MODULES)
    env = {key: value for key, value in os.environ.items() if not key.startswith("HV_")}
    env.update(PYTHONPATH=os.pathsep.join([str(LENT_MACHINE), str(REPO)]), GPUKIT_LENT_SITE=str(lent_site),
               HV_COMFYUI_PATH=unpacked["comfyui"])
    probe = subprocess.run([sys.executable, "-c", "import importlib.util as u; print([m for m in ('av', 'cog', 'boto3', "
                            "'kornia', 'torch', 'pydantic_settings') if u.find_spec(m)])"],
                           env=env, capture_output=True, text=True, cwd=tmp_path)
    assert probe.stdout.split() == ["['torch',", "'pydantic_settings']"], probe.stdout + probe.stderr
    run = subprocess.run([sys.executable, "-m", "bench.gpu_kit", "--scale", "tiny", "--work-dir", str(work),
                          "--json", str(results)], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    print(run.stdout[-4000:])
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
    assert set(payload.LEFT_BEHIND) <= set(report_missing(results))
    report = json.loads(results.read_text())
    assert report["scale"] == "tiny" and report["machine"]["python"]
    v1 = report["families"]["hunyuan_video"]
    summary = v1["summary"]
    assert v1["returncode"] == 0
    assert summary["encode_skipped"] is True  # PyAV refused: the placeholder stood in
    assert 0 < summary["ready_s"] < summary["first_video_s"]
    size = summary["sizes"]["64x64x5"]
    assert size["seconds_per_step"] > 0 and size["steps"] == 3 and size["tflop_per_step"] > 0
    assert size["render_s_at_reference_steps"] > size["render_s"]
    assert size["preview_s"] > 0 and size["preview_encoded"] == "webp"  # no PyAV there: Pillow's WebP encodes it
    assert summary["raw_read_gb_per_s"] > 0 and summary["dit_load_gb_per_s"] > 0
    assert "overhead_s" in summary
    assert summary["features"]["easycache"]["status"] == "measured"
    skipped = summary["features"]["easycache"]["skipped_steps"]  # EasyCache's own count, per run, from the metrics
    assert skipped and all(0 <= k <= steps == 3 for k, steps in skipped), skipped
    assert summary["features"]["fp8"]["status"] == "measured" and summary["features"]["fp8"]["seconds_per_step_ratio"] > 0
    assert summary["features"]["compile"]["status"].startswith("validated only")
    assert summary["features"]["step_distilled"]["status"].startswith("n/a")  # v1 has no step-distilled model
    for name in ("hunyuan_video_15_480p", "hunyuan_video_15_720p"):  # HunyuanVideo 1.5 through its own workflows
        family = report["families"][name]
        assert family["returncode"] == 0, family
        assert family["summary"]["sizes"]["64x64x5"]["seconds_per_step"] > 0, family
        distilled = family["summary"]["features"]["step_distilled"]  # 8 steps at cfg 1 vs the derived 50-step render
        assert distilled["status"] == "measured" and distilled["steps"] == 8 and 0 < distilled["render_s_ratio"], distilled
    # Boot phases of both ways, and each attention kernel: sage is the product's refusal on this CPU.
    boot = summary["boot"]
    assert set(boot) >= {"full", "lean", "ready_lean_vs_full"}, boot
    assert all(boot[mode]["torch"] > 0 and boot[mode]["comfy_modules"] > 0 for mode in ("full", "lean")), boot
    assert summary["attention"]["sage"]["status"].startswith("refused: HV_ATTENTION=sage needs a CUDA GPU")
    assert "boot READY lean/full" in run.stdout and "attention sage" in run.stdout
    assert "seconds/step" in run.stdout and "process start -> READY" in run.stdout and "live preview" in run.stdout  # the printed table
    assert not work.exists()  # the written weights are deleted
