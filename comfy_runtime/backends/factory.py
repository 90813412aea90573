"""The backend a deployment runs, chosen from Settings (HV_BACKEND)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from comfy_runtime.backends.contract import ComfyRuntime
from comfy_runtime.settings import Settings
from comfy_runtime.supply.comfyui_source import ComfyUISourceError, resolve_comfyui_path


@dataclass(frozen=True)
class Backend:
    runtime: ComfyRuntime
    # A local ComfyUI checkout: the embedded runtime imports it; for a remote one it only lends its tokenizers
    # to the prompt-length check, so it may be absent.
    comfyui_path: Path | None
    local: bool  # ComfyUI runs in this process, with the weights and custom nodes of this machine


def backend_from_settings(settings: Settings) -> Backend:
    if settings.backend == "remote":
        from comfy_runtime.backends.remote import RemoteRuntime

        try:
            comfyui_path: Path | None = resolve_comfyui_path(settings)
        except ComfyUISourceError:
            comfyui_path = None
        runtime = RemoteRuntime(settings.comfyui_url, startup_timeout=settings.comfyui_startup_timeout)
        return Backend(runtime, comfyui_path, local=False)

    from comfy_runtime.backends.embedded import EmbeddedRuntime

    comfyui_path = resolve_comfyui_path(settings)
    runtime = EmbeddedRuntime(
        comfyui_path=comfyui_path,
        models_dir=settings.models_dir,
        work_dir=settings.output_dir / ".work",
        device=settings.device,
        extra_custom_nodes=settings.extra_custom_nodes,
        pinned_memory=settings.pinned_memory,
    )
    return Backend(runtime, comfyui_path, local=True)
