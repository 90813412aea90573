"""Every environment variable the product reads, in one place.

Deploy manifests, docs/configuration.md and the tests take the names from here (`env_names()`), so a
renamed setting cannot silently drift from the Kubernetes ConfigMap that sets it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "HV_"
PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    comfyui_path: Path | None = Field(
        None, description="ComfyUI checkout to import. Empty: the one `make setup` provisioned."
    )
    models_dir: Path = Field(
        PROJECT_ROOT / "models", description="Root of the ComfyUI model folders (diffusion_models/, vae/ ...)."
    )
    output_dir: Path = Field(
        PROJECT_ROOT / "outputs", description="Each prediction renders into its own folder under this one."
    )
    workflow: str = Field(
        "hunyuan15_720p_t2v",
        description="The model to serve, named by its text-to-video workflow under workflows/ (docs/models.md); its "
        "image-to-video and upscale workflows come with it. plumbing_video: the weight-free CPU demo.",
    )
    image_to_video: bool = Field(
        True, description="Serve the model's image-to-video workflow (an `image` input): its weights are fetched too."
    )
    upscale: bool = Field(
        False, description="Serve the 1080p super-resolution stage (`upscale=1080p`): its weights (~17 GB) are fetched too."
    )
    workflows_dir: Path = Field(
        PROJECT_ROOT / "workflows",
        description="Folder holding <workflow>.json and <workflow>.bindings.toml (tests point it at derived graphs).",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="auto uses CUDA when a GPU is visible, else the CPU."
    )
    extra_custom_nodes: list[Path] = Field(
        default_factory=list, description="More custom-node folders to load (JSON list of paths)."
    )
    boot: Literal["lean", "full"] = Field(
        "lean",
        description="lean: start only the ComfyUI node modules the served workflows use and defer imports nothing "
        "uses before a run (about half the boot time; comfy_runtime/backends/boot_plan.py); full: start every one, "
        "as ComfyUI itself does (embedded backend).",
    )
    attention: Literal["sdpa", "sage"] = Field(
        "sdpa",
        description="Attention kernel, set through ComfyUI's own switch (comfy_runtime/backends/attention.py): sdpa "
        "(torch's, everywhere) or sage (SageAttention 1, GPU only; the image installs sageattention==1.0.6).",
    )
    # Backend (comfy_runtime/backends/embedded.py, remote.py).
    backend: Literal["embedded", "remote"] = Field(
        "embedded",
        description="embedded: ComfyUI runs inside this process; remote: a ComfyUI server at HV_COMFYUI_URL "
        "(its models and custom nodes live with it).",
    )
    comfyui_url: str = Field("http://127.0.0.1:8188", description="Base URL of the ComfyUI server (HV_BACKEND=remote).")
    comfyui_startup_timeout: float = Field(
        600.0, gt=0, description="Seconds setup waits for the remote ComfyUI to answer before it fails (HV_BACKEND=remote)."
    )
    # Supply chain (comfy_runtime/supply/weights.py, supply/nodes.py).
    weights_mode: Literal["bake", "lazy", "off"] = Field(
        "lazy",
        description="bake: weights are in the image; lazy: setup fetches what is missing (a PVC is filled once); "
        "off: they must already be there. Every mode checks them before READY.",
    )
    weights_manifest: Path = Field(
        PROJECT_ROOT / "weights.manifest", description="The manifest the weights are checked against."
    )
    nodes_lock: Path = Field(
        PROJECT_ROOT / "custom_nodes.lock", description="The lock the loaded custom nodes are checked against."
    )
    max_pixel_frames: int = Field(
        0, ge=0,
        description="Memory budget: the most width x height x frames one prediction may ask for. "
        "0: derived from the GPU's memory (CPU: 1280x720x129, the model's largest trained size).",
    )
    predict_timeout: float = Field(
        3600.0, ge=0,
        description="Seconds one prediction may run before ComfyUI is interrupted and it fails. 0: no limit.",
    )
    pinned_memory: str = Field(
        "auto",
        description="Page-locked host memory ComfyUI may use for offloaded weights (embedded, CUDA): auto (half "
        "the container's cgroup memory limit when there is one, else ComfyUI's own 95% of host RAM), off, or a "
        "size such as 24GiB.",
    )
    # Caller-given URLs (comfy_runtime/supply/url_fetch.py): start images, LoRAs.
    url_allow_http: bool = Field(False, description="Also fetch plain http:// URLs (tests; an internal mirror).")
    url_allow_hosts: list[str] = Field(
        default_factory=list,
        description="Hosts exempt from the public-address check (JSON list). Empty: loopback, private and "
        "link-local targets are refused.",
    )
    url_fetch_deadline: float = Field(
        900.0, gt=0, description="Seconds one caller-given URL (start image, LoRA) may take in all; then it is refused."
    )
    url_min_bytes_per_second: float = Field(
        65536.0, ge=0,
        description="Slowest average a caller-given URL's body may arrive at (after its first 10 s) before it is refused.",
    )
    # LoRAs by URL (comfy_runtime/lora/cache.py), kept under <models>/loras/hv-cache/.
    lora_max_bytes: int = Field(
        2 << 30, ge=1 << 10, description="Largest LoRA file fetched (bytes); larger ones are refused, nothing kept."
    )
    lora_cache_bytes: int = Field(
        20 << 30, ge=1 << 20,
        description="Size bound of the LoRA cache on the models volume; the least recently used LoRA goes first.",
    )
    lora_fetch_timeout: float = Field(120.0, gt=0, description="Seconds a LoRA download may stall before it is refused.")
    # Speed (comfy_runtime/graph/model_chain.py, render/warm_start.py).
    dit_weight_dtype: Literal["default", "fp8_e4m3fn", "fp8_e4m3fn_fast", "fp8_e5m2"] = Field(
        "default",
        description="How the DiT's weights are held (UNETLoader weight_dtype): fp8 halves their memory; "
        "fp8_e4m3fn_fast also runs fp8 matmuls (GPUs with fp8 support).",
    )
    torch_compile: bool = Field(
        False, description="torch.compile the DiT (TorchCompileModel, inductor). GPU only: each new shape compiles first."
    )
    warm_start: bool = Field(
        False,
        description="In setup, render one minimal job through the workflow's real loaders, so the first prediction "
        "loads nothing (the image turns it on).",
    )
    # Live previews (comfy_runtime/render/preview.py; embedded backend): the sampler's x0 estimate as a small video.
    preview_every: int = Field(
        5,
        description="A preview every this many sampling steps (0: none). The default costs under 0.1% of a render "
        "(bench/preview_cost.py); the farm uploads the latest, HV_STREAM_PREVIEWS streams them.",
    )
    preview_format: str = Field("mp4", description="mp4 (libx264, smallest and cheapest) or webp (animated).")
    stream_previews: bool = Field(
        False,
        description="Cog: predict streams its outputs (Cog's Iterator[Path]): each preview as a file, the video "
        "last. Off: one file, as before.",
    )
    # Several GPUs for one video (comfy_runtime/backends/parallel/): sequence-parallel DiT over torch.distributed.
    gpus: int = Field(
        1, ge=1, le=8,
        description="GPUs one prediction runs on: 1 renders as before; N starts N-1 follower processes, one per GPU, "
        "and splits each DiT step over all N (Ulysses sequence parallelism). N must divide the DiT's heads.",
    )
    gpu_collective_timeout: float = Field(
        120.0, gt=0,
        description="Seconds a rank waits for the others inside one step (HV_GPUS > 1) before the prediction fails "
        "and the group is rebuilt: a follower that died or hung cannot stall the worker.",
    )
    # Object storage (comfy_runtime/delivery/storage.py). Unset bucket: predict returns the file itself.
    # Credentials are not settings: boto3 reads the standard AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.
    s3_bucket: str = Field("", description="Bucket the videos are uploaded to. Empty: return the file, no upload.")
    s3_endpoint_url: str = Field(
        "", description="S3 endpoint, e.g. http://minio:9000 for MinIO. Empty: AWS S3 for the region."
    )
    s3_region: str = Field("us-east-1", description="Region to sign requests for (MinIO accepts us-east-1).")
    s3_prefix: str = Field("hunyuan-video/", description="Key prefix; each prediction adds <date>/<run id>/.")
    s3_presign_seconds: int = Field(
        7 * 24 * 3600, ge=1, le=7 * 24 * 3600,
        description="Lifetime of the returned presigned URL (S3 allows at most 7 days).",
    )
    s3_public_base_url: str = Field(
        "", description="Public URL of the bucket (CDN, public MinIO bucket): return <base>/<key>, no signature."
    )
    s3_max_attempts: int = Field(5, ge=1, le=20, description="Attempts per S3 request (botocore standard retries).")
    s3_sidecar: bool = Field(True, description="Also upload <key>.json with the inputs, seed and timings.")

    @field_validator("pinned_memory")
    @classmethod
    def _pinned_memory_is_readable(cls, value: str) -> str:
        parse_pinned_setting(value)  # refused at start-up, naming the forms it takes
        return value


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|kib|mib|gib|tib|kb|mb|gb|tb|k|m|g|t)?\s*$", re.IGNORECASE)
_UNITS = {"b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_pinned_setting(value: str) -> str | int:
    """HV_PINNED_MEMORY: "auto", "off", or a size ("24GiB", "512MiB", "8G", bytes). Returns "auto", "off" or bytes."""
    text = str(value).strip().lower()
    if text in ("auto", "off"):
        return text
    match = _SIZE.match(text)
    if not match:
        raise ValueError(
            f"HV_PINNED_MEMORY={value!r} is not auto, off or a size: use e.g. auto, off, 24GiB or 512MiB"
        )
    number, unit = float(match.group(1)), (match.group(2) or "b").lower()[0]
    return int(number * _UNITS[unit])


def env_names() -> dict[str, str]:
    """Field name -> environment variable name."""
    return {name: f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields}
