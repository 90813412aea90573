"""The backend a deployment runs, chosen from Settings (HV_BACKEND)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from comfy_runtime.backends.contract import ComfyRuntime
from comfy_runtime.errors import HunyuanVideoError
from comfy_runtime.settings import Settings
from comfy_runtime.supply.comfyui_source import ComfyUISourceError, resolve_comfyui_path


class BackendRefused(HunyuanVideoError, ValueError):
    """A backend setting this deployment cannot run."""


@dataclass(frozen=True)
class Backend:
    runtime: ComfyRuntime
    # A local ComfyUI checkout: the embedded runtime imports it; for a remote one it only lends its tokenizers
    # to the prompt-length check, so it may be absent.
    comfyui_path: Path | None
    local: bool  # ComfyUI runs in this process, with the weights and custom nodes of this machine


def backend_from_settings(settings: Settings, previews_taken: bool = True) -> Backend:
    """previews_taken: whether the front door has a use for previews (the farm's upload, Cog's streamed outputs);
    where it has none they are not made. The settings are checked either way."""
    from comfy_runtime.render.preview import OFF, check_policy

    previews = check_policy(settings.preview_every, settings.preview_format, settings.stream_previews)
    if not previews_taken:
        previews = OFF
    if settings.backend == "remote":
        if settings.stream_previews:
            raise BackendRefused(
                "HV_STREAM_PREVIEWS=1 needs the sampler's x0 estimate, which only HV_BACKEND=embedded sees: use "
                "HV_BACKEND=embedded, or unset HV_STREAM_PREVIEWS"
            )
        if settings.gpus > 1:
            raise BackendRefused(
                f"HV_GPUS={settings.gpus} splits the DiT inside this process's ComfyUI, which HV_BACKEND=remote does not "
                "run: use HV_BACKEND=embedded, or HV_GPUS=1 and let the remote ComfyUI use its own GPUs"
            )
        from comfy_runtime.backends.attention import refuse_on_remote
        from comfy_runtime.backends.remote import RemoteRuntime

        refuse_on_remote(settings.attention)

        try:
            comfyui_path: Path | None = resolve_comfyui_path(settings)
        except ComfyUISourceError:
            comfyui_path = None
        runtime = RemoteRuntime(settings.comfyui_url, startup_timeout=settings.comfyui_startup_timeout)
        return Backend(runtime, comfyui_path, local=False)

    from comfy_runtime.backends.embedded import EmbeddedRuntime

    comfyui_path = resolve_comfyui_path(settings)
    arguments = dict(
        comfyui_path=comfyui_path,
        models_dir=settings.models_dir,
        work_dir=settings.output_dir / ".work",
        device=settings.device,
        extra_custom_nodes=settings.extra_custom_nodes,
        pinned_memory=settings.pinned_memory,
        boot=settings.boot,
        attention=settings.attention,
    )
    if settings.gpus == 1:
        embedded = EmbeddedRuntime(**arguments)
        embedded.previews = previews
        return Backend(embedded, comfyui_path, local=True)
    from comfy_runtime.backends.parallel.runtime import ParallelRuntime, refuse_gpu_count

    refuse_gpu_count(settings.gpus, settings.device)
    runtime = ParallelRuntime(**arguments, gpus=settings.gpus, collective_timeout=settings.gpu_collective_timeout)
    runtime.previews = previews  # rank 0 sees the whole x0 estimate: its previews are the video's
    return Backend(runtime, comfyui_path, local=True)
