"""weights.py: which files a workflow needs, the boot-time check, lazy fetch, and pinning from the source."""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from comfy_runtime.graph.workflow import available_workflows, load_workflow
from comfy_runtime.supply.manifest import WeightEntry, load_manifest
from comfy_runtime.supply.weights import (
    SAMPLE_BYTES,
    WeightsError,
    check_file,
    ensure_weights,
    lock_manifest,
    read_record,
    record_path,
    required_entries,
    sample_offsets,
)
from local_servers.range_server import RangeServer
from tests.support.paths import PROJECT_ROOT

SIZE = 8 * (1 << 20) + 777  # larger than the sampled blocks together, so some bytes are not sampled


def _entry(data: bytes, folder: str = "vae", file: str = "hunyuan_video_vae_bf16.safetensors", **source) -> WeightEntry:
    source = source or {"url": "http://127.0.0.1:9/unused"}
    return WeightEntry(folder=folder, file=file, size=len(data), sha256=hashlib.sha256(data).hexdigest(), **source)


def _write_manifest(path: Path, entries: list[WeightEntry]) -> Path:
    blocks = ["# test manifest\n"]
    for e in entries:
        blocks.append(
            f'[[weight]]\nfolder = "{e.folder}"\nfile = "{e.file}"\nurl = "{e.url}"\nhf_repo = "{e.hf_repo}"\n'
            f'hf_revision = "{e.hf_revision}"\nhf_path = "{e.hf_path}"\nsize = {e.size}\nsha256 = "{e.sha256}"\n\n'
        )
    path.write_text("".join(blocks))
    return path


@pytest.fixture
def weight(tmp_path) -> tuple[Path, WeightEntry, bytes]:
    data = os.urandom(SIZE)
    entry = _entry(data)
    models = tmp_path / "models"
    (models / "vae").mkdir(parents=True)
    (models / entry.relative_path).write_bytes(data)
    return models, entry, data


def _flip(path: Path, offset: int, keep_mtime: bool) -> None:
    stat = path.stat()
    with path.open("r+b") as handle:
        handle.seek(offset)
        byte = handle.read(1)
        handle.seek(offset)
        handle.write(bytes([byte[0] ^ 0x01]))
    if keep_mtime:  # silent corruption: the bytes change, the metadata does not
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    else:  # an ordinary write, a second later
        os.utime(path, (stat.st_mtime + 2, stat.st_mtime + 2))


def test_the_workflow_decides_which_weights_are_needed():
    manifest = load_manifest()
    needed = required_entries(load_workflow("hunyuan_t2v").graph, manifest)
    assert {e.file for e in needed} == {
        "hunyuan_video_t2v_720p_bf16.safetensors", "clip_l.safetensors", "llava_llama3_fp8_scaled.safetensors",
        "hunyuan_video_vae_bf16.safetensors",
    }
    assert required_entries(load_workflow("plumbing_video").graph, manifest) == []
    every = {e.file for name in available_workflows() for e in required_entries(load_workflow(name).graph, manifest)}
    assert every == {e.file for e in manifest}, "a manifest entry no workflow loads, or a workflow file with no entry"


@pytest.mark.parametrize(
    "workflow,image_to_video,upscale,expected",
    [
        ("hunyuan15_720p_t2v", False, False, {"hunyuanvideo1.5_720p_t2v_fp16.safetensors", "qwen_2.5_vl_7b_fp8_scaled.safetensors",
                                              "byt5_small_glyphxl_fp16.safetensors", "hunyuanvideo15_vae_fp16.safetensors"}),
        ("hunyuan15_720p_t2v", True, False, {"hunyuanvideo1.5_720p_t2v_fp16.safetensors", "qwen_2.5_vl_7b_fp8_scaled.safetensors",
                                             "byt5_small_glyphxl_fp16.safetensors", "hunyuanvideo15_vae_fp16.safetensors",
                                             "hunyuanvideo1.5_720p_i2v_fp16.safetensors", "sigclip_vision_patch14_384.safetensors"}),
        ("hunyuan15_720p_t2v", False, True, {"hunyuanvideo1.5_720p_t2v_fp16.safetensors", "qwen_2.5_vl_7b_fp8_scaled.safetensors",
                                             "byt5_small_glyphxl_fp16.safetensors", "hunyuanvideo15_vae_fp16.safetensors",
                                             "hunyuanvideo1.5_1080p_sr_distilled_fp16.safetensors",
                                             "hunyuanvideo15_latent_upsampler_1080p.safetensors"}),
        ("hunyuan_t2v", True, True, {"hunyuan_video_t2v_720p_bf16.safetensors", "clip_l.safetensors",
                                     "llava_llama3_fp8_scaled.safetensors", "hunyuan_video_vae_bf16.safetensors",
                                     "hunyuan_video_image_to_video_720p_bf16.safetensors", "llava_llama3_vision.safetensors"}),
    ],
)
def test_a_deployment_fetches_only_its_models_files(monkeypatch, workflow, image_to_video, upscale, expected):
    from comfy_runtime.cli.supply import served_entries
    from comfy_runtime.settings import Settings

    monkeypatch.setenv("HV_WORKFLOW", workflow)
    monkeypatch.setenv("HV_IMAGE_TO_VIDEO", str(image_to_video).lower())
    monkeypatch.setenv("HV_UPSCALE", str(upscale).lower())
    assert {e.file for e in served_entries(Settings(), load_manifest())} == expected


def test_first_check_hashes_in_full_and_records_it(weight):
    models, entry, _ = weight
    assert read_record(models, entry) is None
    assert check_file(models, entry) is None
    record = read_record(models, entry)
    assert record is not None and record.sha256 == entry.sha256 and record.size == SIZE
    assert check_file(models, entry) is None  # the cheap path now


def test_truncation_is_caught(weight):
    models, entry, data = weight
    assert check_file(models, entry) is None
    (models / entry.relative_path).write_bytes(data[: SIZE // 2])
    problem = check_file(models, entry)
    assert problem is not None and problem.kind == "size" and "truncated" in problem.detail
    assert str(SIZE // 2) in problem.detail and str(SIZE) in problem.detail


def test_a_bit_flip_that_kept_the_mtime_is_caught_by_the_samples(weight):
    models, entry, _ = weight
    assert check_file(models, entry) is None
    _flip(models / entry.relative_path, sample_offsets(SIZE)[5] + 100, keep_mtime=True)
    problem = check_file(models, entry)
    assert problem is not None and problem.kind == "sampled"


def test_a_write_anywhere_sends_the_file_back_to_a_full_hash(weight):
    models, entry, _ = weight
    assert check_file(models, entry) is None
    offsets = sample_offsets(SIZE)
    unsampled = next(a + SAMPLE_BYTES + 10 for a, b in zip(offsets, offsets[1:], strict=False) if b - a > SAMPLE_BYTES + 20)
    _flip(models / entry.relative_path, unsampled, keep_mtime=False)
    problem = check_file(models, entry)
    assert problem is not None and problem.kind == "checksum"
    assert entry.sha256 in problem.detail and hashlib.sha256((models / entry.relative_path).read_bytes()).hexdigest() in problem.detail


def test_a_record_for_another_pin_is_not_trusted(weight):
    models, entry, data = weight
    assert check_file(models, entry) is None
    other = WeightEntry(**{**entry.__dict__, "sha256": "f" * 64})
    problem = check_file(models, other)
    assert problem is not None and problem.kind == "checksum"


def test_off_mode_names_the_missing_file_and_the_fix(tmp_path):
    data = b"x" * 1000
    manifest = _write_manifest(tmp_path / "w.manifest", [_entry(data)])
    graph = load_workflow("hunyuan_t2v").graph
    with pytest.raises(WeightsError) as error:
        ensure_weights(graph, tmp_path / "models", "off", manifest)
    message = str(error.value)
    assert "vae/hunyuan_video_vae_bf16.safetensors" in message and "missing" in message
    assert "python -m comfy_runtime weights fetch" in message and "HV_WEIGHTS_MODE=lazy" in message


def test_bake_mode_points_at_the_image_build(weight, tmp_path):
    models, entry, data = weight
    (models / entry.relative_path).write_bytes(data[:100])
    manifest = _write_manifest(tmp_path / "w.manifest", [entry])
    with pytest.raises(WeightsError) as error:
        ensure_weights(load_workflow("hunyuan_t2v").graph, models, "bake", manifest)
    assert "truncated" in str(error.value) and "cog build" in str(error.value)


def test_lazy_mode_fetches_what_is_missing_or_broken(tmp_path, caplog):
    data = os.urandom(3 * (1 << 20))
    served = tmp_path / "served"
    served.mkdir()
    (served / "vae.bin").write_bytes(data)
    models = tmp_path / "models"
    (models / "vae").mkdir(parents=True)
    (models / "vae" / "hunyuan_video_vae_bf16.safetensors").write_bytes(data[:10])  # truncated
    with RangeServer(served) as server:
        entry = _entry(data, url=f"{server.url}/vae.bin")
        manifest = _write_manifest(tmp_path / "w.manifest", [entry])
        with caplog.at_level(logging.WARNING):
            ensure_weights(load_workflow("hunyuan_t2v").graph, models, "lazy", manifest, connections=3)
        assert (models / entry.relative_path).read_bytes() == data
        # said before it starts: how much, from where, into where, and how to stop or avoid it
        notice = next(r.getMessage() for r in caplog.records if "HV_WEIGHTS_MODE=lazy: downloading" in r.getMessage())
        assert "1 weight file(s), 0.0 GiB, from 127.0.0.1" in notice and str(models.resolve()) in notice, notice
        assert "Ctrl-C stops it" in notice and "HV_WEIGHTS_MODE=off" in notice and "weights fetch" in notice, notice
        assert list(models.rglob("*.lock")) == []  # the download's lock file goes with it
        assert read_record(models, entry) is not None
        sent = server.bytes_sent
        ensure_weights(load_workflow("hunyuan_t2v").graph, models, "lazy", manifest)  # a second boot: no download
        assert server.bytes_sent == sent


def test_unpinned_weights_warn_loudly_but_do_not_fail(tmp_path, caplog):
    models = tmp_path / "models"
    (models / "vae").mkdir(parents=True)
    (models / "vae" / "hunyuan_video_vae_bf16.safetensors").write_bytes(b"")  # a placeholder
    unpinned = WeightEntry(folder="vae", file="hunyuan_video_vae_bf16.safetensors", hf_repo="o/r", hf_path="v.st")
    manifest = _write_manifest(tmp_path / "w.manifest", [unpinned])
    with caplog.at_level(logging.WARNING):
        assert ensure_weights(load_workflow("hunyuan_t2v").graph, models, "off", manifest) == [unpinned]
    assert "UNPINNED WEIGHTS" in caplog.text and "weights lock" in caplog.text


def test_lock_pins_from_hugging_face_headers_and_by_download(tmp_path, monkeypatch):
    hf_data, url_data = os.urandom(200_000), os.urandom(300_000)
    served = tmp_path / "served"
    served.mkdir()
    (served / "hf.bin").write_bytes(hf_data)
    (served / "plain.bin").write_bytes(url_data)
    commit = "0123456789abcdef0123456789abcdef01234567"
    with RangeServer(served) as server:
        hf_path = "/org/repo/resolve/main/split_files/vae/v.safetensors"
        server.aliases[hf_path] = "hf.bin"
        server.extra_headers[hf_path] = {
            "X-Linked-Etag": f'"{hashlib.sha256(hf_data).hexdigest()}"', "X-Linked-Size": str(len(hf_data)),
            "X-Repo-Commit": commit,
        }
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        entries = [
            WeightEntry(folder="vae", file="v.safetensors", hf_repo="org/repo", hf_path="split_files/vae/v.safetensors"),
            WeightEntry(folder="text_encoders", file="t.safetensors", url=f"{server.url}/plain.bin"),
        ]
        manifest = _write_manifest(tmp_path / "w.manifest", entries)
        changed = lock_manifest(manifest, tmp_path / "models", connections=2)
        hf_downloads = [r for m, p, r in server.requests if p == hf_path and m == "GET"]
    pinned = load_manifest(manifest)
    assert len(changed) == 2 and all(e.pinned for e in pinned)
    assert (pinned[0].size, pinned[0].sha256, pinned[0].hf_revision) == (
        len(hf_data), hashlib.sha256(hf_data).hexdigest(), commit)
    assert (pinned[1].size, pinned[1].sha256) == (len(url_data), hashlib.sha256(url_data).hexdigest())
    assert hf_downloads == []  # Hugging Face pins come from headers, not a download
    assert manifest.read_text().startswith("# test manifest")  # comments survive


def test_cli_fetch_then_verify_then_detect_corruption(tmp_path):
    data = os.urandom(1 << 20)
    served = tmp_path / "served"
    served.mkdir()
    (served / "vae.bin").write_bytes(data)
    models = tmp_path / "models"
    env = {**os.environ, "HV_MODELS_DIR": str(models), "HV_WORKFLOW": "hunyuan_t2v"}  # the model whose VAE this is
    with RangeServer(served) as server:
        manifest = _write_manifest(tmp_path / "w.manifest", [_entry(data, url=f"{server.url}/vae.bin")])
        env["HV_WEIGHTS_MANIFEST"] = str(manifest)

        def cli(*args):
            return subprocess.run([sys.executable, "-m", "comfy_runtime", "weights", *args], cwd=PROJECT_ROOT,
                                  env=env, capture_output=True, text=True, timeout=120)

        fetched = cli("fetch")
        assert fetched.returncode == 0, fetched.stderr
        assert (models / "vae" / "hunyuan_video_vae_bf16.safetensors").read_bytes() == data
        assert cli("verify").returncode == 0
        _flip(models / "vae" / "hunyuan_video_vae_bf16.safetensors", 500_000, keep_mtime=True)
        verified = cli("verify")
    assert verified.returncode == 1
    assert "checksum mismatch" in verified.stderr and "hunyuan_video_vae_bf16.safetensors" in verified.stderr
    assert record_path(models, load_manifest(manifest)[0]).is_file()
