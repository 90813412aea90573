"""The GPU kit's driver: per family, write the weights, measure the raw read, run the measuring child, clean up.

`python -m bench.gpu_kit --scale tiny|full` (see docs/gpu-kit.md). One family at a time: its DiT (25.6 GB
for the 13B one) and VAE are written, measured and deleted before the next family's are written, so the
largest family bounds the disk needed, not their sum.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.gpu_kit.families import (
    ATTENTION,
    FAMILIES,
    FEATURES,
    GPU_ONLY_FEATURES,
    STEP_DISTILLED_FAMILIES,
    STEP_DISTILLED_REQUEST,
    Family,
    Scale,
    by_name,
)
from bench.gpu_kit.flops import Tokens, forward_flops, image_tokens, peak_bf16
from bench.gpu_kit.measure import LINE_PREFIX, use_placeholder_pyav_if_absent
from bench.gpu_kit.models import (
    check_detection,
    dit_shapes,
    drop_from_page_cache,
    import_comfy,
    parameter_count,
    sequential_read_seconds,
    vae_shapes,
    write_streamed,
)

REPO = Path(__file__).resolve().parents[2]
KIT_NODES = Path(__file__).resolve().parent / "custom_nodes"
PROMPT = "a red fox running through fresh snow at dawn, cinematic lighting, shallow depth of field"
DEFAULTS: dict[Scale, dict[str, Any]] = {
    # steps: enough for a median over several step-to-step intervals; the full-step time follows (summary).
    # overhead_pairs: renderer/executor pairs for the overhead figure (a full-size pair costs ~a minute).
    "tiny": {"steps": 3, "budget_s": 300.0, "overhead_pairs": 3},
    "full": {"steps": 4, "budget_s": 540.0, "overhead_pairs": 1},
}
# The families' own default step counts (the workflows' BasicScheduler steps).
REFERENCE_STEPS = {"hunyuan_video": 30, "hunyuan_video_15_480p": 50, "hunyuan_video_15_720p": 50}


def say(text: str) -> None:
    print(text, flush=True)


def machine(missing: list[str]) -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "missing": missing,  # what the product imports somewhere and this machine runs the kit without
        "python": platform.python_version(), "torch": torch.__version__, "cpu_count": os.cpu_count(),
        "platform": platform.platform(), "cuda": torch.version.cuda,
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / (1 << 30), 1))
    else:
        info["gpu"] = None
    return info


def real_vae(scale: Scale) -> bool:
    # At tiny scale the VAE is the linear stand-in the CPU tests use: the real 3D VAE takes ~7 s per 64x64x5
    # decode on 2 cores, which would be most of the CI run and measures nothing a CPU run can tell.
    return scale == "full"


def derive_workflow(family: Family, scale: Scale, target: Path) -> Path:
    """The bundled workflow with only the text-encoder loader swapped for its stand-in and the DiT and VAE
    loaders pointed at the kit's files (the VAE: its stand-in at tiny scale); the bindings are copied unchanged."""
    source = REPO / "workflows"
    graph = json.loads((source / f"{family.workflow}.json").read_text())
    stand_in, inputs = family.text_stand_in[scale]
    for node in graph.values():
        if node["class_type"] == "DualCLIPLoader":
            node["class_type"], node["inputs"] = stand_in, dict(inputs)
            node.setdefault("_meta", {})["title"] = "stand-in for DualCLIPLoader (real output width)"
        elif node["class_type"] == "UNETLoader":
            node["inputs"]["unet_name"] = family.dit_file(scale)
        elif node["class_type"] == "VAELoader" and real_vae(scale):
            node["inputs"]["vae_name"] = family.vae_file()
        elif node["class_type"] == "VAELoader":
            node["class_type"], node["inputs"] = family.vae_stand_in[0], dict(family.vae_stand_in[1])
            node.setdefault("_meta", {})["title"] = "stand-in for VAELoader (tiny scale)"
    target.mkdir(parents=True, exist_ok=True)
    # The other bundled workflows come along unchanged: a workflow may name siblings (image-to-video, upscale)
    # that load from the same folder; the kit serves text-to-video only (HV_IMAGE_TO_VIDEO / HV_UPSCALE off).
    for other in source.glob("*.json"):
        shutil.copyfile(other, target / other.name)
        shutil.copyfile(other.with_name(f"{other.stem}.bindings.toml"), target / f"{other.stem}.bindings.toml")
    (target / f"{family.workflow}.json").write_text(json.dumps(graph, indent=2))
    return target


def write_manifest(models_dir: Path, written: dict[str, Any], target: Path) -> Path:
    """A weights manifest pinning the generated files, plus the verification records the boot check reads, so
    setup runs the product's cheap check (size, record, sampled blocks) as it does with real weights."""
    from comfy_runtime.supply.manifest import WeightEntry
    from comfy_runtime.supply.weights import write_record

    blocks = []
    for folder, info in written.items():
        entry = WeightEntry(folder=folder, file=info.path.name, size=info.size, sha256=info.sha256,
                            url=f"file://{info.path}")
        write_record(models_dir, entry, info.path, info.sha256)
        blocks.append(f'[[weight]]\nfolder = "{folder}"\nfile = "{entry.file}"\nurl = "{entry.url}"\n'
                      f'size = {entry.size}\nsha256 = "{entry.sha256}"\n')
    target.write_text("# Generated by bench/gpu_kit: seeded random weights, deleted after the run.\n\n" + "\n".join(blocks))
    return target


def latent_thw(family: Family, width: int, height: int, frames: int) -> tuple[int, int, int]:
    spatial = family.spatial_compression
    return ((frames - 1) // 4 + 1, height // spatial, width // spatial)


def step_flops(family: Family, scale: Scale, shapes: dict[str, tuple[int, ...]], size: dict[str, int], prompt: str) -> float:
    config = family.dit[scale]
    # The stand-ins give one token per word plus the start token (the real tokenizers give a few more: the
    # text term is a small share of a step either way). No byT5 glyph tokens: the kit's prompt quotes no text.
    text_tokens = 1 + len(prompt.split())
    tokens = Tokens(image=image_tokens(latent_thw(family, size["width"], size["height"], size["num_frames"]),
                                       config["patch_size"]), llm_text=text_tokens)
    return forward_flops(shapes, config["hidden_size"], tokens, batch=family.passes_per_step)


def run_family(family: Family, scale: Scale, args: argparse.Namespace, work: Path, deadline: float, device: str) -> dict[str, Any]:
    import torch

    result: dict[str, Any] = {"label": family.label, "scale": scale}
    config = family.dit[scale]
    shapes = dit_shapes(config)
    result["dit_detected"] = check_detection(config, shapes, family.detected_as)
    result["dit_parameters"] = parameter_count(shapes)
    say(f"[{family.name}] DiT {result['dit_parameters'] / 1e9:.2f} B parameters, detected by ComfyUI as {family.detected_as}")
    models = work / "models"
    last = [0.0]

    def progress(done: int, total: int) -> None:
        if total > 1e9 and (done / total - last[0] >= 0.1 or done == total):
            last[0] = done / total
            say(f"[{family.name}] writing the DiT: {done / 1e9:.1f}/{total / 1e9:.1f} GB")

    generator_device = "cuda" if device == "cuda" else "cpu"
    dit = write_streamed(models / "diffusion_models" / family.dit_file(scale), shapes, family.dit_dtype[scale],
                         seed=0, device=generator_device, on_progress=progress)
    files = {"diffusion_models": dit}
    if real_vae(scale):
        files["vae"] = write_streamed(models / "vae" / family.vae_file(), vae_shapes(family.vae_keys), "bfloat16",
                                      seed=1, device=generator_device)
    if device == "cuda":
        torch.cuda.empty_cache()
    result["written"] = {("dit" if folder == "diffusion_models" else folder): {
        "file": w.path.name, "bytes": w.size, "parameters": w.parameters, "seconds": w.seconds,
        "gb_per_s": w.size / w.seconds / 1e9} for folder, w in files.items()}
    say(f"[{family.name}] wrote " + ", ".join(f"{w.path.name} {w.size / 1e9:.2f} GB in {w.seconds:.1f} s" for w in files.values()))
    manifest = write_manifest(models, files, work / "weights.manifest")
    workflows = derive_workflow(family, scale, work / "workflows")

    dropped = drop_from_page_cache(dit.path)
    raw = sequential_read_seconds(dit.path)
    for written in files.values():
        drop_from_page_cache(written.path)
    result["raw_read"] = {"bytes": dit.size, "seconds": raw, "gb_per_s": dit.size / raw / 1e9, "page_cache_dropped": dropped}
    say(f"[{family.name}] raw sequential read of the DiT file: {dit.size / raw / 1e9:.2f} GB/s "
        f"({'cold: page cache dropped' if dropped else 'page cache NOT dropped: this is memory speed'})")

    sizes = [s.__dict__ for s in family.sizes[scale]]
    features = [f for f in args.features if f]
    spec = {
        "prompt": args.prompt, "steps": args.steps, "sizes": sizes, "features": features,
        "validate_only": sorted(GPU_ONLY_FEATURES) if device == "cpu" else [],
        "overhead_pairs": DEFAULTS[scale]["overhead_pairs"],
        "latent_format": "HunyuanVideo15" if family.spatial_compression == 16 else "HunyuanVideo",
        "deadline": deadline, "family": family.name,
        "step_distilled_families": sorted(STEP_DISTILLED_FAMILIES), "step_distilled_request": STEP_DISTILLED_REQUEST,
    }
    env = {
        **os.environ,
        "HV_MODELS_DIR": str(models), "HV_OUTPUT_DIR": str(work / "outputs"), "HV_WORKFLOW": family.workflow,
        "HV_WORKFLOWS_DIR": str(workflows), "HV_WEIGHTS_MANIFEST": str(manifest), "HV_WEIGHTS_MODE": "off",
        "HV_EXTRA_CUSTOM_NODES": json.dumps([str(KIT_NODES)]), "HV_DEVICE": device,
        "HV_IMAGE_TO_VIDEO": "false", "HV_UPSCALE": "false",  # text-to-video only (settings of the models work)
        "PYTHONPATH": os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]),
        "HV_BOOT": "lean", "HV_ATTENTION": "sdpa",  # the product's defaults; the rows below vary them
    }
    records, returncode, log_tail = measure_child(family, args, spec, env, work, deadline)
    if returncode and returncode < 0:
        say(f"[{family.name}] the measuring process was stopped at the deadline (signal {-returncode})")
    elif returncode:
        say(f"[{family.name}] the measuring process failed (exit {returncode}); its last lines:")
        for line in log_tail[-25:]:
            say(f"  | {line}")
        result["log_tail"] = log_tail
    result["returncode"] = returncode
    # Boot phases: today's full boot (HV_BOOT=full) against the lean one the main run used, same files, same machine.
    if time.time() < deadline:
        boot_records, _, _ = measure_child(family, args, {**spec, "boot_only": True}, {**env, "HV_BOOT": "full"},
                                           work, deadline)
        records += [{**r, "run": "boot_full"} for r in boot_records if r["kind"] == "boot"]
    # Each other attention kernel: the plain renders again in a process booted with it (ComfyUI picks its kernel at
    # import), or the product's refusal where this machine cannot run it.
    for kernel in (k for k in args.attention if k != "sdpa"):
        from comfy_runtime.backends.attention import AttentionRefused, check_attention

        try:
            check_attention(kernel, on_gpu=device == "cuda")
        except AttentionRefused as refused:
            records.append({"kind": "attention", "attention": kernel, "status": f"refused: {refused}"})
            say(f"[{family.name}] HV_ATTENTION={kernel}: refused here: {refused}")
            continue
        if time.time() > deadline:
            records.append({"kind": "attention", "attention": kernel, "status": "skipped: budget spent"})
            continue
        kernel_records, code, tail = measure_child(family, args, {**spec, "renders_only": True, "features": []},
                                                   {**env, "HV_ATTENTION": kernel}, work, deadline)
        renders = [r for r in kernel_records if r["kind"] == "render"]
        records.append({"kind": "attention", "attention": kernel, "renders": renders,
                        "status": "measured" if code == 0 and renders else f"failed (exit {code}): {' | '.join(tail[-3:])}"})
    result["records"] = records
    result["flops_per_step"] = {
        f"{s['width']}x{s['height']}x{s['num_frames']}": step_flops(family, scale, shapes, s, args.prompt) for s in sizes
    }
    if not args.keep:
        shutil.rmtree(models, ignore_errors=True)
        shutil.rmtree(work / "outputs", ignore_errors=True)
    return result


def measure_child(family: Family, args: argparse.Namespace, spec: dict[str, Any], env: dict[str, str], work: Path,
                  deadline: float) -> tuple[list[dict[str, Any]], int | None, list[str]]:
    """One measuring process (bench/gpu_kit/measure.py) under env: its GPUKIT records, exit status, last log lines."""
    records: list[dict[str, Any]] = []
    log_tail: list[str] = []
    spec_path = work / "spec.json"
    spec["spawned_at"] = time.time()  # "process start" for READY and the first video: just before the spawn
    spec_path.write_text(json.dumps(spec))
    child = subprocess.Popen([sys.executable, "-m", "bench.gpu_kit.measure", str(spec_path)], cwd=REPO, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    # A child that hangs without printing must not outlive the budget: stop it (by its own PID) 60 s past it.
    watchdog = threading.Timer(max(1.0, deadline + 60 - time.time()), child.kill)
    watchdog.start()
    try:
        assert child.stdout is not None
        for line in child.stdout:
            if line.startswith(LINE_PREFIX):
                record = json.loads(line[len(LINE_PREFIX):])
                records.append(record)
                say(f"[{family.name}] {brief(record)}")
            else:
                log_tail[:] = [*log_tail[-39:], line.rstrip()]
                if args.verbose:
                    say(f"  | {line.rstrip()}")
        child.wait(timeout=60)
    finally:
        watchdog.cancel()
        if child.poll() is None:
            child.kill()
            child.wait()
    return records, child.returncode, log_tail


def fmt(value: Any, pattern: str) -> str:
    return "n/a" if value is None else pattern % value


def brief(record: dict[str, Any]) -> str:
    kind = record["kind"]
    if kind == "ready":
        return f"READY {record['seconds_from_spawn']:.1f} s after the process started (encode skipped: {record['encode_skipped']})"
    if kind == "render":
        return (f"render {record['label']} {record['size']}: {record['total_s']:.2f} s, "
                f"{fmt(record.get('seconds_per_step'), '%.3f')} s/step, VAE decode {fmt(record.get('vae_decode_s'), '%.2f s')}, "
                f"peak GPU {fmt(record.get('peak_gpu_gib'), '%.1f GiB')}")
    if kind == "executor":
        return (f"ComfyUI's executor on the same graph: {record['seconds']:.2f} s; the renderer: "
                f"{record['renderer_seconds']:.2f} s; product overhead {record['overhead_seconds']:+.2f} s")
    if kind == "feature":
        runs = record.get("runs") or []
        timing = ", ".join(f"{r['label']} {r['total_s']:.2f} s" for r in runs)
        return f"{record['feature']}: {record['status']}{': ' + timing if timing else ''}"
    if kind == "preview":
        return (f"live preview {record['size']}: {record['seconds'] * 1000:.1f} ms ({record['frames']} frames of "
                f"{record['width']}x{record['height']}, {record['encoded']})")
    if kind == "done":
        return f"done {record['seconds_from_spawn']:.1f} s after the process started"
    return json.dumps(record)


def summarise(name: str, result: dict[str, Any], peak: float | None) -> dict[str, Any]:
    """The figures the docs quote, from the raw records."""
    records = result.get("records", [])
    renders = [r for r in records if r["kind"] == "render"]
    ready = next((r for r in records if r["kind"] == "ready"), None)
    first = next((r for r in renders if r["label"] == "first"), None)
    summary: dict[str, Any] = {
        "dit_parameters_b": result["dit_parameters"] / 1e9,
        "dit_file_gb": result["written"]["dit"]["bytes"] / 1e9,
        "raw_read_gb_per_s": result["raw_read"]["gb_per_s"],
        "ready_s": ready["seconds_from_spawn"] if ready else None,
        "first_video_s": first.get("seconds_from_spawn") if first else None,
        "encode_skipped": ready["encode_skipped"] if ready else None,
    }
    if first:
        dit_loads = [load for load in first.get("loads", []) if load["file"] == result["written"]["dit"]["file"]]
        if dit_loads:
            summary["dit_load_gb_per_s"] = dit_loads[0]["gb_per_s"]
            summary["dit_load_vs_raw_read"] = dit_loads[0]["gb_per_s"] / result["raw_read"]["gb_per_s"]
        unet = next((s for key, s in first["node_s"].items() if key.endswith(" UNETLoader")), None)
        summary["unetloader_node_s"] = unet
        warm = next((r for r in renders if r["label"] == "warm" and r["size"] == first["size"]), None)
        if unet is not None and first.get("first_step_s") is not None and warm and warm["seconds_per_step"]:
            # ComfyUI may map the file and read it only when the model moves to the GPU (inside the first step):
            # the load that counts is the loader node plus what the first step took beyond a steady step.
            to_gpu = unet + max(0.0, first["first_step_s"] - warm["seconds_per_step"])
            summary["dit_load_to_gpu_s"] = to_gpu
            summary["dit_load_to_gpu_gb_per_s"] = result["written"]["dit"]["bytes"] / to_gpu / 1e9
    sizes: dict[str, Any] = {}
    for warm in (r for r in renders if r["label"] == "warm"):
        flops = result["flops_per_step"].get(warm["size"])
        sps = warm["seconds_per_step"]
        entry = {
            "seconds_per_step": sps, "vae_decode_s": warm["vae_decode_s"], "peak_gpu_gib": warm["peak_gpu_gib"],
            "render_s": warm["total_s"], "steps": warm["steps"], "tflop_per_step": flops / 1e12 if flops else None,
            "mfu": flops / sps / peak if flops and sps and peak else None,
        }
        reference = REFERENCE_STEPS.get(name)
        if reference and sps:
            # The same render at the family's default step count: every step past the measured ones costs one
            # median step; load, decode and encode are paid once either way.
            entry["render_s_at_reference_steps"] = warm["total_s"] + (reference - warm["steps"]) * sps
            entry["reference_steps"] = reference
        preview = next((r for r in records if r["kind"] == "preview" and r["size"] == warm["size"]), None)
        if preview:  # one live preview, as a share of one step (the issue-23 budget: under 1%)
            entry["preview_s"] = preview["seconds"]
            entry["preview_per_step"] = preview["seconds"] / sps if sps else None
            entry["preview_encoded"] = preview["encoded"]
        sizes[warm["size"]] = entry
    summary["sizes"] = sizes
    executor = next((r for r in records if r["kind"] == "executor"), None)
    if executor:
        summary["overhead_s"] = executor["overhead_seconds"]
        summary["overhead_fraction"] = executor["overhead_seconds"] / executor["seconds"]
        if executor.get("encode_seconds") is not None:  # encoding is the product's own work, ComfyUI's executor has none
            summary["overhead_excluding_encode_s"] = executor["overhead_seconds"] - executor["encode_seconds"]
    plain = next(iter(sizes.values()), None)
    features: dict[str, Any] = {}
    for record in (r for r in records if r["kind"] == "feature"):
        runs = record.get("runs") or []
        if not runs or not plain or not plain["seconds_per_step"]:
            features[record["feature"]] = {"status": record["status"]}
            continue
        steady = runs[-1]
        entry = {"status": record["status"], "render_s_ratio": steady["total_s"] / plain["render_s"]}
        if steady["seconds_per_step"]:
            entry["seconds_per_step_ratio"] = steady["seconds_per_step"] / plain["seconds_per_step"]
        if record["feature"] == "compile" and len(runs) == 2:
            entry["compile_s"] = runs[0]["total_s"] - runs[1]["total_s"]
        if record["feature"] == "fp8":
            entry["peak_gpu_gib"] = steady["peak_gpu_gib"]
        if record["feature"] == "easycache":
            entry["skipped_steps"] = record.get("easycache_skipped")
        if record["feature"] == "step_distilled" and plain.get("render_s_at_reference_steps"):
            # Against the family's own 50-step render (derived from its measured steps): Tencent reports -75%.
            entry["steps"] = steady["steps"]
            entry["render_s_ratio"] = steady["total_s"] / plain["render_s_at_reference_steps"]
            entry["versus"] = f"{plain['reference_steps']}-step render (derived)"
        features[record["feature"]] = entry
    summary["features"] = features
    summary["attention"] = {"sdpa": {"status": "measured (the main run)"}}
    for record in (r for r in records if r["kind"] == "attention"):
        entry = {"status": record["status"]}
        warm = next((r for r in record.get("renders", []) if r["label"] == "warm"), None)
        if warm and plain and warm.get("seconds_per_step") and plain["seconds_per_step"]:
            entry["seconds_per_step"] = warm["seconds_per_step"]
            entry["seconds_per_step_ratio"] = warm["seconds_per_step"] / plain["seconds_per_step"]
            entry["peak_gpu_gib"] = warm["peak_gpu_gib"]
        summary["attention"][record["attention"]] = entry
    boots = {("full" if r.get("run") == "boot_full" else r["boot"]): r for r in records if r["kind"] == "boot"}
    summary["boot"] = {mode: {"ready_s": r["ready_s"], **r["phases"]} for mode, r in boots.items()}
    if "full" in boots and "lean" in boots:
        summary["boot"]["ready_lean_vs_full"] = boots["lean"]["ready_s"] / boots["full"]["ready_s"]
    return summary


def table(results: dict[str, Any]) -> str:
    rows: list[tuple[str, str, str]] = []
    for name, result in results.items():
        s = result.get("summary")
        if not s:
            rows.append((name, "status", result.get("status", "failed")))
            continue
        if result.get("returncode"):
            rows.append((name, "status", f"measuring process failed (exit {result['returncode']}): see log_tail in the JSON"))
        rows += [
            (name, "DiT parameters / file", f"{s['dit_parameters_b']:.2f} B / {s['dit_file_gb']:.2f} GB"),
            (name, "raw sequential read", fmt(s["raw_read_gb_per_s"], "%.2f GB/s")),
            (name, "DiT file -> GPU (loader + 1st step extra)", fmt(s.get("dit_load_to_gpu_gb_per_s"), "%.2f GB/s")
             + fmt(s.get("dit_load_to_gpu_s"), " (%.1f s)")),
            (name, "load_torch_file alone (may map lazily)", fmt(s.get("dit_load_gb_per_s"), "%.2f GB/s")
             + fmt(s.get("dit_load_vs_raw_read"), " (%.2fx raw)")),
            (name, "UNETLoader node", fmt(s.get("unetloader_node_s"), "%.2f s")),
            (name, "process start -> READY", fmt(s["ready_s"], "%.1f s")),
            (name, "process start -> first video", fmt(s["first_video_s"], "%.1f s")),
        ]
        for size, entry in s["sizes"].items():
            rows += [
                (name, f"{size} seconds/step", fmt(entry["seconds_per_step"], "%.3f s")),
                (name, f"{size} VAE decode", fmt(entry["vae_decode_s"], "%.2f s")),
                (name, f"{size} peak GPU memory", fmt(entry["peak_gpu_gib"], "%.1f GiB")),
                (name, f"{size} TFLOP per step", fmt(entry["tflop_per_step"], "%.4g")),
                (name, f"{size} MFU (dense bf16 peak)", fmt(entry["mfu"] and 100 * entry["mfu"], "%.1f%%")),
                (name, f"{size} render ({entry['steps']} steps)", fmt(entry["render_s"], "%.1f s")),
            ]
            if "preview_s" in entry:
                rows.append((name, f"{size} live preview (latent2rgb + {entry['preview_encoded']})",
                             fmt(entry["preview_s"], "%.3f s")
                             + fmt(entry["preview_per_step"] and 100 * entry["preview_per_step"], " (%.2f%% of a step)")))
            if "render_s_at_reference_steps" in entry:
                rows.append((name, f"{size} render at {entry['reference_steps']} steps (derived)",
                             fmt(entry["render_s_at_reference_steps"], "%.1f s")))
        rows.append((name, "product overhead vs ComfyUI executor", fmt(s.get("overhead_s"), "%+.3f s")
                     + fmt(s.get("overhead_fraction") and 100 * s["overhead_fraction"], " (%+.1f%%)")
                     + ("" if s.get("overhead_excluding_encode_s") is None
                        else f"; {s['overhead_excluding_encode_s']:+.3f} s without encoding")))
        boot = s.get("boot", {})
        for mode in ("full", "lean"):
            if mode in boot:
                b = boot[mode]
                rows.append((name, f"boot HV_BOOT={mode}: READY (torch / ComfyUI modules / rest)",
                             f"{b['ready_s']:.1f} s ({b['torch']:.1f} / {b['comfy_modules']:.1f} / {b['setup_rest']:.1f} s)"))
        if "ready_lean_vs_full" in boot:
            rows.append((name, "boot READY lean/full", f"x{boot['ready_lean_vs_full']:.2f}"))
        for kernel, entry in s.get("attention", {}).items():
            text = entry["status"] if "seconds_per_step_ratio" not in entry else (
                f"{entry['seconds_per_step']:.3f} s/step, x{entry['seconds_per_step_ratio']:.3f} of sdpa")
            rows.append((name, f"attention {kernel}", text[:160]))
        for feature, entry in s["features"].items():
            if "render_s_ratio" not in entry:
                rows.append((name, feature, entry["status"]))
                continue
            text = f"render x{entry['render_s_ratio']:.3f}"
            if "seconds_per_step_ratio" in entry:
                text += f", s/step x{entry['seconds_per_step_ratio']:.3f}"
            if "compile_s" in entry:
                text += f", compile {entry['compile_s']:.1f} s"
            if entry.get("skipped_steps"):
                text += f", skipped {entry['skipped_steps']}"
            if entry.get("versus"):
                text += f" ({entry['steps']} steps vs the {entry['versus']})"
            rows.append((name, feature, text))
    widths = [max(len(r[i]) for r in rows) for i in range(3)] if rows else [0, 0, 0]
    return "\n".join(f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c}" for a, b, c in rows)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_kit", description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=["tiny", "full"], required=True,
                        help="tiny: the same code at test size on a CPU (CI); full: the real architectures on a GPU")
    parser.add_argument("--families", default="", help="comma-separated family names (default: every enabled one)")
    parser.add_argument("--features", default=",".join(FEATURES), help=f"speed features to compare: {', '.join(FEATURES)}")
    parser.add_argument("--attention", default=",".join(ATTENTION),
                        help=f"HV_ATTENTION kernels to compare (sdpa is the main run's): {', '.join(ATTENTION)}")
    parser.add_argument("--steps", type=int, default=None, help="sampling steps per render (default: tiny 3, full 4)")
    parser.add_argument("--budget-s", type=float, default=None, help="stop starting new measurements after this many seconds")
    parser.add_argument("--prompt", default=PROMPT)
    parser.add_argument("--json", type=Path, default=REPO / "bench" / "results" / "gpu_kit.json", help="where the results go")
    parser.add_argument("--work-dir", type=Path, default=None, help="where the weights are written (default: a temp folder)")
    parser.add_argument("--keep", action="store_true", help="keep the written weights (default: deleted after each family)")
    parser.add_argument("--verbose", action="store_true", help="also print the measuring process's own log")
    args = parser.parse_args(argv)
    defaults = DEFAULTS[args.scale]
    args.steps = args.steps or defaults["steps"]
    args.budget_s = args.budget_s or defaults["budget_s"]
    args.features = [f.strip() for f in args.features.split(",") if f.strip()]
    args.attention = [a.strip() for a in args.attention.split(",") if a.strip()]
    if set(args.attention) - set(ATTENTION):
        parser.error(f"unknown attention kernel(s) {sorted(set(args.attention) - set(ATTENTION))}; known: {', '.join(ATTENTION)}")
    unknown = set(args.features) - set(FEATURES)
    if unknown:
        parser.error(f"unknown feature(s) {sorted(unknown)}; known: {', '.join(FEATURES)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    started = time.time()
    from bench.gpu_kit.payload import LEFT_BEHIND, _importable

    missing = [name for name in LEFT_BEHIND if not _importable(name)]
    use_placeholder_pyav_if_absent()  # before comfy_runtime: its encoder imports av at module level
    deadline = started + args.budget_s
    scale: Scale = args.scale
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if scale == "full" and device == "cpu":
        say("--scale full needs a CUDA GPU (a 13B DiT on a CPU takes hours per step); use --scale tiny here")
        return 2
    families = [by_name(n.strip()) for n in args.families.split(",") if n.strip()] or FAMILIES
    from comfy_runtime.settings import Settings
    from comfy_runtime.supply.comfyui_source import resolve_comfyui_path

    import_comfy(resolve_comfyui_path(Settings()), device)
    info = machine(missing)
    report: dict[str, Any] = {
        "kit": "bench/gpu_kit", "scale": scale, "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": info, "steps": args.steps, "prompt": args.prompt, "families": {},
    }
    peak = peak_bf16(info.get("gpu") or "")
    report["peak_bf16_flops"] = peak
    say(f"GPU kit --scale {scale} on {info.get('gpu') or 'CPU'} (torch {info['torch']}), {args.steps} steps per render, "
        f"budget {args.budget_s:.0f} s")
    work_root = Path(args.work_dir or tempfile.mkdtemp(prefix="gpu-kit-"))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    try:
        for family in families:
            if not family.enabled or family.workflow is None:
                report["families"][family.name] = {"label": family.label, "status": f"off: {family.why_off}"}
                say(f"[{family.name}] off: {family.why_off}")
                continue
            if time.time() > deadline:
                report["families"][family.name] = {"label": family.label, "status": "skipped: budget spent"}
                continue
            try:
                result = run_family(family, scale, args, work_root / family.name, deadline, device)
                result["summary"] = summarise(family.name, result, peak)
            except Exception as error:  # one family's failure must not lose the others' figures
                result = {"label": family.label, "status": f"failed: {type(error).__name__}: {error}"}
                say(f"[{family.name}] FAILED: {type(error).__name__}: {error}")
            report["families"][family.name] = result
            args.json.write_text(json.dumps(report, indent=2))  # partial results survive a cut-off
    finally:
        if not args.keep:
            shutil.rmtree(work_root, ignore_errors=True)
    report["seconds"] = time.time() - started
    args.json.write_text(json.dumps(report, indent=2))
    say("\n" + table(report["families"]))
    say(f"\nJSON: {args.json} ({report['seconds']:.0f} s in all)")
    failed = [n for n, r in report["families"].items() if str(r.get("status", "")).startswith("failed") or r.get("returncode")]
    return 1 if failed else 0
