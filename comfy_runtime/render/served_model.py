"""ServedModel: one deployment of a model, started once.

start() checks the supply (weights, locked nodes) of each workflow the deployment serves, boots the runtime,
proves each workflow's bindings fit ComfyUI, refuses a DiT with the wrong input channels, puts the placeholder
start image where image-to-video graphs look for it, and validates each graph as it will run. What one run does
is VideoService's (service.py): plan (plan.py), run, encode, deliver.
"""

from __future__ import annotations

import logging
from pathlib import Path

from comfy_runtime.backends.boot_plan import classes_of, not_loaded_error
from comfy_runtime.backends.contract import ComfyRuntime
from comfy_runtime.backends.factory import backend_from_settings
from comfy_runtime.errors import HunyuanVideoError
from comfy_runtime.graph.model_chain import apply_dit_settings
from comfy_runtime.graph.workflow import Workflow, check_bindings, load_workflow
from comfy_runtime.job.budget import gpu_total_bytes
from comfy_runtime.job.limits import JobLimits
from comfy_runtime.job.params import MAX_IMAGE_BYTES, graph_input_ranges, graph_input_types
from comfy_runtime.lora.source import LoraSource
from comfy_runtime.render.model_choice import Stages, switched_off
from comfy_runtime.render.plan import START_IMAGE_NAME
from comfy_runtime.settings import Settings
from comfy_runtime.supply.boot_checks import NO_SUPPLY_CHECKS, SupplyChain, SupplyChecks
from comfy_runtime.supply.url_fetch import FetchPolicy

log = logging.getLogger(__name__)


class SpeedSettingRefused(HunyuanVideoError, ValueError):
    pass


class WrongModelFile(HunyuanVideoError, RuntimeError):
    """A workflow's loader names a file of another model than the one the workflow is wired for."""


class ServedModel:
    def __init__(
        self,
        runtime: ComfyRuntime,
        workflow: Workflow,
        output_root: Path,
        limits: JobLimits | None = None,
        supply: SupplyChecks = NO_SUPPLY_CHECKS,
        tap_frames: bool = True,
        loras: LoraSource | None = None,
        dit_weight_dtype: str = "default",
        torch_compile: bool = False,
        image_policy: FetchPolicy | None = None,
        serve_image_to_video: bool = True,
        serve_upscale: bool = True,
    ):
        self.runtime = runtime
        self.workflow = workflow
        self.output_root = Path(output_root).resolve()
        self.limits = limits or JobLimits.default()
        self.supply = supply  # weights + locked nodes, checked in start()
        # The lossless frame tap (frame_tap.py) is ~90 MB at 848x480x73: cheap as a local file deleted at once,
        # but a remote server would keep every one (ComfyUI has no delete API) and send each over /view.
        # A remote run keeps its SaveVideo file instead, re-encoded for delivery.
        self.tap_frames = tap_frames
        self.loras = loras or LoraSource(None)
        self.dit_weight_dtype = dit_weight_dtype  # deployment settings of the DiT (graph/model_chain.py)
        self.torch_compile = torch_compile
        self.image_policy = image_policy or FetchPolicy(MAX_IMAGE_BYTES)
        self.serve_image_to_video = serve_image_to_video
        self.serve_upscale = serve_upscale
        self.stages = Stages(ready={workflow.name: workflow})  # start() adds the siblings it can serve

    @classmethod
    def from_settings(cls, settings: Settings | None = None, previews_taken: bool = True) -> ServedModel:
        settings = settings or Settings()
        backend = backend_from_settings(settings, previews_taken)
        if settings.torch_compile and backend.local and gpu_total_bytes(settings.device) is None:
            raise SpeedSettingRefused(
                "HV_TORCH_COMPILE=true needs a GPU: on the CPU each new shape compiles for tens of seconds and runs no "
                "faster. Unset it, or run on a GPU"
            )
        return cls(
            backend.runtime,
            load_workflow(settings.workflow, settings.workflows_dir),
            settings.output_dir,
            JobLimits.from_settings(settings, backend.comfyui_path),
            # The weights and locked nodes live with the ComfyUI that runs the graph: a remote one has its own.
            supply=SupplyChain.from_settings(settings) if backend.local else NO_SUPPLY_CHECKS,
            tap_frames=backend.local,
            loras=LoraSource.from_settings(settings, local=backend.local),
            dit_weight_dtype=settings.dit_weight_dtype,
            torch_compile=settings.torch_compile,
            image_policy=FetchPolicy.from_settings(settings, MAX_IMAGE_BYTES),
            serve_image_to_video=settings.image_to_video,
            serve_upscale=settings.upscale,
        )

    def start(self) -> None:
        stages = Stages()
        for workflow in self.workflow.family():
            reason = switched_off(self.workflow, workflow, self.serve_image_to_video, self.serve_upscale)
            if reason is None and workflow is not self.workflow:
                reason = self.supply.unavailable(workflow.graph)
            if reason:
                log.warning("workflow %s (%s) is not served: %s", workflow.name, workflow.title, reason)
                stages.off[workflow.name] = reason
                continue
            self.supply.before_boot(workflow.graph)
            stages.ready[workflow.name] = workflow
        graphs = {w.name: classes_of([w.graph]) for w in stages.ready.values()}
        require = getattr(self.runtime, "require_node_classes", None)  # the embedded runtime's lean boot
        if require is not None:
            require(set().union(*graphs.values()))
        self.runtime.start()
        schemas = self.runtime.node_schemas()
        for workflow in stages.ready.values():  # first: a locked node that failed to import is named as such
            self.supply.after_boot(workflow.graph, self.runtime, schemas)
        missing = sorted(set().union(*graphs.values()) - set(schemas))
        if missing and require is not None:  # at setup, naming each class and its workflow: never at run time
            raise not_loaded_error(missing, graphs)  # (a remote ComfyUI's own validation below names them)
        for workflow in stages.ready.values():
            check_bindings(workflow, schemas, graph_input_types(), graph_input_ranges())
            self._check_dit_channels(workflow)
            if workflow.takes_image:  # its LoadImage must find a file to validate against
                self.runtime.upload_input(placeholder_image(self.output_root), START_IMAGE_NAME)
            # As it will run: the deployment's DiT settings (weight dtype, compile) must be ones this ComfyUI takes.
            self.runtime.validate(apply_dit_settings(workflow.graph, self.dit_weight_dtype, self.torch_compile))
        self.stages = stages
        unbound = sorted(set(graph_input_types()) - set(self.workflow.bindings))
        if unbound and not self.workflow.model:  # a model's workflow refuses what it cannot use instead
            log.warning("workflow %s ignores these inputs: %s", self.workflow.name, ", ".join(unbound))

    def _check_dit_channels(self, workflow: Workflow) -> None:
        """A DiT with the wrong input channels can run and silently ignore the image (HunyuanImageToVideo's
        "v1 (concat)" on a 16-channel text-to-video DiT): refuse it at setup."""
        for node_id, wanted in workflow.dit_in_channels.items():
            file_name = workflow.graph[node_id]["inputs"]["unet_name"]
            found = self.supply.dit_in_channels(file_name)
            if found is not None and found != wanted:
                raise WrongModelFile(
                    f"workflow {workflow.name} ({workflow.title}) needs a DiT with {wanted} input channels at node "
                    f"{node_id}, but {file_name} has {found} (a text-to-video DiT would ignore the start image): "
                    "put the image-to-video DiT the manifest names there"
                )

    def cancel(self) -> None:
        self.runtime.interrupt()

    def close(self) -> None:
        self.runtime.close()


def placeholder_image(folder: Path) -> Path:
    """A small grey PNG for image-to-video graphs to validate against before any caller sent an image."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / ".start_image_placeholder.png"
    Image.new("RGB", (64, 64), (128, 128, 128)).save(path)
    return path
