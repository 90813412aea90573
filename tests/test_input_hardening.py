"""Bad input beyond the request's own rules (those, prompt text and bounds included, are tests/test_request.py):
prompts over the token limit, jobs that cannot fit in memory, and inputs that try to steer a path. Each is
refused with the rule and the fix, before anything runs."""

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from pydantic import ValidationError

from comfy_runtime.backends.outputs import collect_output_files
from comfy_runtime.graph.workflow import BindingError, Target, Workflow, load_workflow
from comfy_runtime.job.budget import TRAINED_MAX_PIXEL_FRAMES, MemoryBudget, OverBudget, budget_for
from comfy_runtime.job.limits import JobLimits
from comfy_runtime.job.prompt import MAX_PROMPT_TOKENS, PromptTokenCounter, PromptTooLong
from comfy_runtime.job.request import VideoRequest
from comfy_runtime.render.served_model import ServedModel
from comfy_runtime.service import VideoService
from comfy_runtime.settings import Settings
from comfy_runtime.supply.comfyui_source import resolve_comfyui_path
from tests.support.media import probe_video
from tests.support.paths import PROJECT_ROOT


@pytest.fixture(scope="module")
def tokens():
    return PromptTokenCounter(resolve_comfyui_path(Settings()))


# -- prompt length in tokens (the text rules themselves: tests/test_request.py) ------------------


def test_prompt_tokens_are_counted_with_the_llama_tokenizer(tokens):
    assert tokens.count("a cat walks on the grass, realistic style") == 9


def test_a_prompt_over_256_tokens_is_refused_with_its_count_and_what_fits(tokens):
    at_limit = " ".join(["cat"] * MAX_PROMPT_TOKENS)
    assert tokens.check(at_limit) == MAX_PROMPT_TOKENS
    with pytest.raises(PromptTooLong) as error:
        tokens.check(at_limit + " cat")
    message = str(error.value)
    assert f"{MAX_PROMPT_TOKENS + 1} tokens" in message and f"at most {MAX_PROMPT_TOKENS}" in message
    assert "shorten" in message


def test_the_renderer_refuses_a_long_prompt_before_running_anything(runtime, tokens, tmp_path):
    renderer = VideoService(ServedModel(runtime, load_workflow("plumbing_video"), tmp_path, JobLimits(budget_for(None, None), tokens)))
    with pytest.raises(PromptTooLong):
        renderer.render(VideoRequest(prompt="word " * 300, width=64, height=64, num_frames=9), log_line=lambda _: None)
    assert not any(tmp_path.iterdir()), "a refused job must not create a run folder"


def test_the_smallest_job_renders_and_decodes(runtime, tmp_path):
    renderer = VideoService(ServedModel(runtime, load_workflow("plumbing_video"), tmp_path))
    rendered = renderer.render(VideoRequest(prompt="x", width=64, height=64, num_frames=1, fps=1, seed=0), lambda _: None)
    video = probe_video(rendered.video)
    assert (video.frames, video.width, video.height) == (1, 64, 64)


# -- memory budget -----------------------------------------------------------------------------


def test_a_job_over_the_budget_is_refused_with_values_that_fit():
    budget = MemoryBudget(848 * 480 * 49, "set")
    budget.check(848, 480, 49)  # exactly at the budget fits
    with pytest.raises(OverBudget) as error:
        budget.check(848, 480, 73)
    message = str(error.value)
    assert "848x480 at 73 frames" in message and "HV_MAX_PIXEL_FRAMES" in message
    assert "num_frames to 49" in message
    size = message.split("the size to ")[1].split()[0]
    width, height = map(int, size.split("x"))
    assert width % 16 == 0 and height % 16 == 0 and width * height * 73 <= budget.max_pixel_frames
    assert abs(width / height - 848 / 480) < 0.15  # about the same aspect ratio


def test_the_default_budget_is_the_trained_maximum_and_a_gpu_derives_its_own():
    assert budget_for(None, None).max_pixel_frames == TRAINED_MAX_PIXEL_FRAMES == 1280 * 720 * 129
    assert budget_for(5_000_000, 80 * 2**30).max_pixel_frames == 5_000_000  # the setting wins
    small_gpu = budget_for(None, 24 * 2**30)
    assert 848 * 480 * 73 <= small_gpu.max_pixel_frames < TRAINED_MAX_PIXEL_FRAMES
    assert budget_for(None, 80 * 2**30).max_pixel_frames == TRAINED_MAX_PIXEL_FRAMES
    with pytest.raises(OverBudget, match="GiB of GPU memory"):
        small_gpu.check(1280, 1280, 129)


def test_the_budget_setting_reaches_the_renderer_and_refuses_before_sampling(runtime, tmp_path, monkeypatch):
    monkeypatch.setenv("HV_MAX_PIXEL_FRAMES", str(64 * 64 * 9))
    monkeypatch.setenv("HV_OUTPUT_DIR", str(tmp_path))
    renderer = VideoService.from_settings(Settings(workflow="plumbing_video"))
    renderer.model.runtime = runtime  # the session's booted ComfyUI
    runs = []
    real_run = runtime.run

    def recording_run(*args, **kwargs):
        runs.append(args)
        return real_run(*args, **kwargs)

    monkeypatch.setattr(runtime, "run", recording_run)
    with pytest.raises(OverBudget, match="lower num_frames to 9"):
        renderer.render(VideoRequest(prompt="x", width=64, height=64, num_frames=13), log_line=lambda _: None)
    assert runs == [], "the refusal must come before any ComfyUI work"
    assert not any(p for p in tmp_path.iterdir() if p.name != ".work")
    rendered = renderer.render(VideoRequest(prompt="x", width=64, height=64, num_frames=9, seed=1), lambda _: None)
    assert probe_video(rendered.video).frames == 9
    assert len(runs) == 1, "the recorder sees the runs that do reach ComfyUI"


# -- the CLI: what arrives through argv --------------------------------------------------------


def test_the_cli_refuses_undecodable_bytes_and_control_characters_without_booting(hv_env, tmp_path):
    # No ComfyUI to import: a CLI that reached for it would fail on HV_COMFYUI_PATH instead of the rule.
    env = {**os.environ, "HV_COMFYUI_PATH": str(tmp_path / "no-comfyui-here")}
    result = subprocess.run(
        [sys.executable, "-m", "comfy_runtime", "render", "--prompt", b"a cat\xff\x07 walks", "--width", "50"],
        cwd=PROJECT_ROOT, capture_output=True, timeout=60, env=env,
    )
    assert result.returncode == 2, result.stderr
    stderr = result.stderr.decode()
    assert "--prompt" in stderr and "not valid UTF-8" in stderr and "--width" in stderr and "multiple of 16" in stderr
    assert "Traceback" not in stderr and "HV_COMFYUI_PATH" not in stderr and "no-comfyui-here" not in stderr


# -- no input steers a path --------------------------------------------------------------------


def test_the_save_prefix_is_the_services_whatever_the_bindings_carry():
    workflow = load_workflow("plumbing_video")
    hostile = Workflow(workflow.name, workflow.graph, {**workflow.bindings, "prompt": (Target("4", "filename_prefix"),)})
    graph = hostile.render({"prompt": "../../../etc/evil"}, filename_prefix="plumbing_video_abc")
    assert graph["4"]["inputs"]["filename_prefix"] == "plumbing_video_abc"


def test_a_request_cannot_carry_a_path_field():
    with pytest.raises(ValidationError, match="filename_prefix"):
        VideoRequest(prompt="x", filename_prefix="../../evil")


def test_path_like_prompts_stay_text_and_every_file_lands_in_the_run_folder(runtime, tmp_path):
    root = tmp_path / "outputs"
    renderer = VideoService(ServedModel(runtime, load_workflow("plumbing_video"), root))
    before = {p for p in tmp_path.rglob("*")}
    rendered = renderer.render(
        VideoRequest(prompt="../../../../tmp/evil /etc/passwd C:\\x embedding:../../x", width=64, height=64, num_frames=9),
        log_line=lambda _: None,
    )
    created = {p for p in tmp_path.rglob("*")} - before
    assert created and all(rendered.run_dir in p.parents or p == rendered.run_dir or p == root for p in created)


def test_reported_output_names_cannot_point_outside_the_run_folder(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "ok.mp4").write_bytes(b"x")
    (tmp_path / "secret.txt").write_text("s")
    ui = {"9": {"videos": [
        {"filename": "ok.mp4", "subfolder": "", "type": "output"},
        {"filename": "secret.txt", "subfolder": "..", "type": "output"},
        {"filename": "../secret.txt", "subfolder": "", "type": "output"},
        {"filename": str(tmp_path / "secret.txt"), "subfolder": "", "type": "output"},
    ]}}
    assert collect_output_files(ui, {"output": run}) == [(run / "ok.mp4").resolve()]


@pytest.mark.parametrize("name", ["../workflows/plumbing_video", "/etc/passwd", "plumbing_video/../hunyuan_t2v"])
def test_workflow_names_are_plain_names(name):
    with pytest.raises(BindingError, match="plain name"):
        load_workflow(name)


# The HTTP edge's own limits (the schema's maxLength and its neighbour) are sent over HTTP in test_hardening_http.py.


def test_a_comfyui_without_the_tokenizer_fails_at_setup_naming_the_setting(tmp_path):
    with pytest.raises(FileNotFoundError, match="HV_COMFYUI_PATH"):
        PromptTokenCounter(tmp_path)


def test_embedding_names_in_a_prompt_cannot_leave_the_embeddings_folder(runtime, tmp_path):
    """ComfyUI's text encoders read `embedding:<name>` in a prompt as a file under models/embeddings:
    the one place where prompt text becomes a file name. A name inside the folder loads (the control);
    one that climbs out of it, or an absolute path, stays text. The tokenizer and the folder are the ones
    the booted runtime's CLIP loaders use."""
    import folder_paths
    import safetensors.torch
    import torch
    from comfy.text_encoders.hunyuan_video import HunyuanVideoTokenizer

    (embeddings,) = folder_paths.get_folder_paths("embeddings")
    assert runtime.models_dir in Path(embeddings).resolve().parents, "embeddings come from HV_MODELS_DIR"
    Path(embeddings).mkdir(parents=True, exist_ok=True)
    vectors = {"clip_l": torch.ones(1, 768), "llama": torch.ones(1, 4096)}
    name = f"hv_test_{uuid.uuid4().hex[:8]}"
    inside = Path(embeddings) / f"{name}.safetensors"
    outside = tmp_path / f"{name}.safetensors"
    safetensors.torch.save_file(vectors, inside)
    safetensors.torch.save_file(vectors, outside)
    tokenizer = HunyuanVideoTokenizer(embedding_directory=folder_paths.get_folder_paths("embeddings"))

    def embeddings_loaded(prompt: str) -> int:
        VideoRequest(prompt=prompt)  # the product accepts it as plain text
        tokens = tokenizer.tokenize_with_weights(prompt)
        return sum(isinstance(token[0], torch.Tensor) for batches in tokens.values() for batch in batches for token in batch)

    try:
        assert embeddings_loaded(f"a cat embedding:{name}") >= 1
        climbing = os.path.relpath(outside.with_suffix(""), embeddings)
        assert climbing.startswith("..")
        assert embeddings_loaded(f"a cat embedding:{climbing}") == 0
        assert embeddings_loaded(f"a cat embedding:{outside.with_suffix('')}") == 0
    finally:
        inside.unlink()
