"""Embedded backend: ComfyUI imported as a library and run inside this process.

This is the only module that touches ComfyUI internals. ComfyUI keeps its state in module
globals (node registry, folder paths, interrupt flag, progress hook), so one process boots it
once; every EmbeddedRuntime in the process shares that boot and must agree on its ComfyUI path.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import logging
import shutil
import sys
import threading
import time
import uuid
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

from comfy_runtime.backends import boot_plan, preview_hook
from comfy_runtime.backends.attention import apply_attention, check_attention
from comfy_runtime.backends.boot_log import filtered_comfy_boot
from comfy_runtime.backends.contract import (
    INTERRUPT_GRACE_SECONDS,
    NodeStarted,
    ProgressCallback,
    RunResult,
    RunTracker,
    StepProgress,
    describe_validation_failure,
    is_out_of_memory,
    node_failure_from_event,
    timed_out_message,
)
from comfy_runtime.backends.device import require_cuda
from comfy_runtime.backends.host_memory import (
    CGROUP_ROOT,
    apply_pinned_memory,
    container_memory_limit,
    decide_pinned_memory,
)
from comfy_runtime.backends.outputs import collect_output_files
from comfy_runtime.errors import (
    ComfyRuntimeError,
    ExecutionInterrupted,
    NodeExecutionError,
    NodeFailure,
    OutOfMemory,
    RunTimedOut,
    WorkflowInvalidError,
)
from comfy_runtime.graph.node_schema import node_schema_from_object_info
from comfy_runtime.graph.types import Graph, NodeSchema
from comfy_runtime.lora.fit import AppliedLora, LoraDoesNotFit, LoraFit, measure_fit
from comfy_runtime.render.preview import OFF, PreviewMaker, PreviewPolicy
from comfy_runtime.settings import parse_pinned_setting

log = logging.getLogger(__name__)

_BOOT_LOCK = threading.Lock()
_booted_from: Path | None = None
# comfy_extras files started in this process (ComfyUI's registry is global): a lean boot starts some, a later runtime
# asking for more (or a full boot) starts the rest, each file once.
_extras_started: set[str] = set()


class _EventSink:
    """What PromptExecutor calls its `server`: it receives ComfyUI's execution events."""

    def __init__(self) -> None:
        self.client_id: str | None = None
        self.last_node_id: str | None = None
        self.last_prompt_id: str | None = None
        self.sockets_metadata: dict[str, Any] = {}
        self._run: _RunState | None = None

    def attach(self, run: _RunState | None) -> None:
        self._run = run

    def send_sync(self, event: str, data: Any, sid: str | None = None) -> None:
        run = self._run
        if run is not None:
            run.on_event(event, data)

    def send_progress_text(self, text: str, node_id: str | None, sid: str | None = None) -> None:
        log.info("node %s: %s", node_id, text)

    def queue_updated(self) -> None:
        pass


class _RunState(RunTracker):
    """Events of one run, gathered from ComfyUI's callbacks (executor thread)."""

    def __init__(self, prompt_id: str, graph: Graph, on_progress: ProgressCallback | None, cancel: threading.Event):
        super().__init__(graph, on_progress)
        self.prompt_id = prompt_id
        self.cancel = cancel
        self.failure: NodeFailure | None = None
        self.interrupted = False
        self.invalid: WorkflowInvalidError | None = None
        self.lora_fits: dict[str, LoraFit] = {}  # by LoRA node id, measured as ComfyUI applied it
        self.cache_steps_skipped: int | None = None  # EasyCache/LazyCache's own count of skipped steps
        self.previews: PreviewMaker | None = None  # this run's, when its runtime makes previews

    def on_event(self, event: str, data: dict[str, Any]) -> None:
        if event == "execution_start" and self.cancel.is_set():
            # ComfyUI clears the interrupt flag when it starts; re-raise a cancel that came earlier.
            _comfy().model_management.interrupt_current_processing(True)
        elif event == "executing" and data.get("node") is not None:
            self.current_node = str(data["node"])
            self.emit(NodeStarted(self.current_node, self.class_of(self.current_node) or "?"))
        elif event == "execution_error":
            self.failure = node_failure_from_event(data)
        elif event == "execution_interrupted":
            self.interrupted = True


class _Comfy:
    """Handles on the ComfyUI modules, imported once the path and args are set."""

    def __init__(self) -> None:
        import comfy.lora as comfy_lora
        import comfy.lora_convert as lora_convert
        import comfy.model_management as model_management
        import comfy.utils as comfy_utils
        import execution
        import folder_paths
        import nodes
        from comfy_execution.utils import get_executing_context

        self.comfy_lora = comfy_lora
        self.lora_convert = lora_convert
        self.model_management = model_management
        self.comfy_utils = comfy_utils
        self.execution = execution
        self.folder_paths = folder_paths
        self.nodes = nodes
        self.get_executing_context = get_executing_context


_comfy_modules: _Comfy | None = None


def _comfy() -> _Comfy:
    assert _comfy_modules is not None, "ComfyUI is not booted"
    return _comfy_modules


def boot_comfyui(
    comfyui_path: Path, device: Literal["auto", "cpu", "cuda"], defer_imports: bool = False, attention: str = "sdpa"
) -> _Comfy:
    global _booted_from, _comfy_modules
    with _BOOT_LOCK:
        if _booted_from is not None:
            if _booted_from != comfyui_path:
                raise RuntimeError(
                    f"ComfyUI from {_booted_from} is already loaded in this process; "
                    f"cannot load another from {comfyui_path}. Use one HV_COMFYUI_PATH per process."
                )
            return _comfy()
        if defer_imports:  # the lean boot (boot_plan.py): before anything imports them
            boot_plan.defer_imports()
            boot_plan.use_bytecode(comfyui_path)
        sys.path.insert(0, str(comfyui_path))
        # ComfyUI's nodes.py puts ComfyUI/comfy first on sys.path, which shadows the top-level
        # `utils` package with comfy/utils.py. main.py dodges that by importing utils first; so do we.
        import utils.extra_config  # noqa: F401

        # isort: split
        import comfy.options  # noqa: F401  (leaves argument parsing off: we set args ourselves)
        import torch
        from comfy.cli_args import args

        use_cpu = device == "cpu" or (device == "auto" and not torch.cuda.is_available())
        if device == "cuda":
            require_cuda()
        args.cpu = use_cpu
        args.preview_method = "none"
        if not use_cpu:  # HV_ATTENTION (attention.py): ComfyUI's own switch, read when its attention module loads
            apply_attention(args, attention)
        with filtered_comfy_boot(cpu_only=use_cpu):
            _comfy_modules = _Comfy()
        # comfy/ldm/hunyuan_video/upsampler.py does `import model_management, model_patcher` (ComfyUI/comfy is
        # on sys.path): a second copy of each module, with its own loaded-model list and its own pinned-memory
        # budget, and its import-time boot lines printed twice. Both names are one module.
        sys.modules.setdefault("model_management", _comfy_modules.model_management)
        sys.modules.setdefault("model_patcher", importlib.import_module("comfy.model_patcher"))
        # Samplers' tqdm bars write carriage-return lines into the same log stream as our "step k/n"
        # lines and garble the first one; the progress hook (which reports every step) does not need them.
        _comfy_modules.comfy_utils.set_progress_bar_enabled(False)
        _booted_from = comfyui_path
        return _comfy_modules


def _uses_gpu(device: str) -> bool:
    if device == "cpu":
        return False
    import torch

    return bool(torch.cuda.is_available())


def _core_classes() -> set[str]:
    """The node classes nodes.py itself defines (as opposed to those comfy_extras and custom nodes register)."""
    nodes = _comfy().nodes
    return {name for name, cls in nodes.NODE_CLASS_MAPPINGS.items() if getattr(cls, "__module__", "") == "nodes"}


def _object_info(obj_class: Any, class_type: str) -> dict[str, Any]:
    from comfy_api.internal import _ComfyNodeInternal

    if issubclass(obj_class, _ComfyNodeInternal):
        return obj_class.GET_NODE_INFO_V1()
    return {"input": obj_class.INPUT_TYPES(), "output": list(obj_class.RETURN_TYPES), "name": class_type}


class EmbeddedRuntime:
    """ComfyUI in this process. Loaded models stay cached between runs."""

    def __init__(
        self,
        comfyui_path: Path,
        models_dir: Path,
        work_dir: Path,
        device: Literal["auto", "cpu", "cuda"] = "auto",
        extra_custom_nodes: list[Path] | tuple[Path, ...] = (),
        pinned_memory: str = "auto",
        cgroup_root: Path = CGROUP_ROOT,
        boot: Literal["lean", "full"] = "full",
        attention: str = "sdpa",
    ):
        self.comfyui_path = Path(comfyui_path).resolve()
        self.models_dir = Path(models_dir).resolve()
        self.work_dir = Path(work_dir).resolve()
        self.device = device
        if device == "cuda":
            # At construction, before setup checks or fetches weights: a GPU-less pod must not first download 35 GB.
            require_cuda()
        if attention != "sdpa":  # refused here too, before supply checks fetch anything
            check_attention(attention, on_gpu=_uses_gpu(device))
        self.attention = attention
        self.extra_custom_nodes = [Path(p).resolve() for p in extra_custom_nodes]
        self.pinned_memory = pinned_memory  # HV_PINNED_MEMORY
        self.cgroup_root = Path(cgroup_root)
        self.boot = boot  # HV_BOOT (boot_plan.py); lean with no classes required starts every node module
        self._needed_classes: set[str] = set()
        self.boot_plan: boot_plan.BootPlan | None = None
        self._started = False
        self._sink = _EventSink()
        self._executor: Any = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="comfyui")
        self._run_lock = threading.Lock()
        self._cancel = threading.Event()
        self._stuck: Future | None = None  # a run that outlived its time limit and its interrupt
        # A LoRA node ComfyUI takes from its output cache does not run again: its fit is the one measured when it ran.
        self._lora_fit_memo: dict[tuple[str, str, float], LoraFit] = {}
        self.previews: PreviewPolicy = OFF  # HV_PREVIEW_EVERY / HV_PREVIEW_FORMAT (factory.py sets it)

    # -- lifecycle -------------------------------------------------------------------------
    def require_node_classes(self, classes: Iterable[str]) -> None:
        """The node classes the served workflows use: a lean boot starts only the extra node modules defining them
        (after start, it starts any not yet started)."""
        self._needed_classes |= set(classes)
        if self._started:
            self._on_thread(self._load_nodes).result()

    def start(self) -> None:
        if self._started:
            return
        comfy = boot_comfyui(self.comfyui_path, self.device, defer_imports=self.boot == "lean", attention=self.attention)
        self._point_model_folders(comfy.folder_paths)
        for folder in self.extra_custom_nodes:
            comfy.folder_paths.add_model_folder_path("custom_nodes", str(folder))
        self._on_thread(self._load_nodes).result()
        _install_measurements(comfy)
        preview_hook.install(importlib.import_module("latent_preview"))
        self._size_pinned_memory()
        self._install_prompt_server_stand_in()
        self._executor = comfy.execution.PromptExecutor(
            self._sink, cache_type=comfy.execution.CacheType.CLASSIC, cache_args={"lru": 0, "ram": 0}
        )
        self._started = True

    def close(self) -> None:
        self._thread.shutdown(wait=True, cancel_futures=True)

    def _point_model_folders(self, folder_paths: ModuleType) -> None:
        """Replace ComfyUI's own models folder with ours, keeping its legacy aliases (unet/, clip/)."""
        default_root = Path(folder_paths.models_dir).resolve()
        for name, (paths, extensions) in list(folder_paths.folder_names_and_paths.items()):
            remapped = []
            for path in paths:
                resolved = Path(path).resolve()
                if resolved == default_root or default_root in resolved.parents:
                    remapped.append(str(self.models_dir / resolved.relative_to(default_root)))
                else:
                    remapped.append(path)
            folder_paths.folder_names_and_paths[name] = (remapped, extensions)
        folder_paths.models_dir = str(self.models_dir)
        folder_paths.filename_list_cache.clear()
        for kind in ("temp", "input", "user"):
            folder = self.work_dir / f"comfy-{kind}"
            folder.mkdir(parents=True, exist_ok=True)
            getattr(folder_paths, f"set_{kind}_directory")(str(folder))

    async def _init_nodes(self, extra_files: tuple[str, ...], first: bool) -> list[str]:
        # nodes.init_extra_nodes(init_api_nodes=False) step by step, for its summary: it ends every boot with
        # "IMPORT FAILED" and "pip install -r requirements.txt", which is wrong advice in this venv. The extra node
        # files go through ComfyUI's own load_custom_node, as init_builtin_extra_nodes starts them.
        nodes = _comfy().nodes
        if first:
            await nodes.init_public_apis()
        extras_dir = self.comfyui_path / "comfy_extras"
        failed = []
        for file in extra_files:
            _extras_started.add(file)
            if not await nodes.load_custom_node(str(extras_dir / file), module_parent="comfy_extras"):
                failed.append(file)
        if first:
            await nodes.init_external_custom_nodes()
        return failed

    def _extra_files_to_start(self) -> tuple[str, ...]:
        every = boot_plan.extra_node_files(self.comfyui_path)
        if self.boot == "lean" and self._needed_classes:
            self.boot_plan = boot_plan.plan_for(self.comfyui_path, self._needed_classes, _core_classes())
            wanted = self.boot_plan.extra_files
        else:
            wanted = every
        return tuple(file for file in wanted if file not in _extras_started)

    def _load_nodes(self) -> None:
        first = not _extras_started and not _comfy().nodes.NODE_CLASS_MAPPINGS.get("SaveVideo")
        files = self._extra_files_to_start()
        if not files and not first:
            return
        model_management = _comfy().model_management
        with filtered_comfy_boot(cpu_only=model_management.cpu_state == model_management.CPUState.CPU) as boot:
            failed = asyncio.run(self._init_nodes(files, first))
        if boot.summary():
            log.info(boot.summary())
        if self.boot == "lean":  # deferred packages a served class may use run now, not in its first run
            boot_plan.warm_for(self._needed_classes or None)
        others = [name for name in failed if name not in boot.without_torchaudio]
        if others:
            log.warning("ComfyUI's optional nodes %s did not import (the traceback is above); a workflow that uses "
                        "them fails validation naming the class", ", ".join(others))

    def _size_pinned_memory(self) -> None:
        """Keep ComfyUI's page-locked host memory under the container's limit (host_memory.py says why)."""
        import psutil

        model_management = _comfy().model_management
        decision = decide_pinned_memory(
            parse_pinned_setting(self.pinned_memory), container_memory_limit(self.cgroup_root),
            psutil.virtual_memory().total, model_management.MAX_PINNED_MEMORY,
        )
        apply_pinned_memory(decision, [model_management])
        log.info(decision.line)

    def _install_prompt_server_stand_in(self) -> None:
        # A few core nodes report text through PromptServer.instance; with no web server that is us.
        server = sys.modules.get("server")
        if server is not None and getattr(server.PromptServer, "instance", None) is None:
            server.PromptServer.instance = self._sink

    def _on_thread(self, fn: Any, *args: Any) -> Future:
        return self._thread.submit(fn, *args)

    # -- queries ---------------------------------------------------------------------------
    def loaded_custom_nodes(self) -> set[str]:
        """Folder names of the custom-node modules ComfyUI imported successfully (a failed import is absent)."""
        self.start()
        return set(_comfy().nodes.LOADED_MODULE_DIRS)

    def node_schemas(self) -> dict[str, NodeSchema]:
        self.start()
        schemas = {}
        for name, cls in _comfy().nodes.NODE_CLASS_MAPPINGS.items():
            try:
                schemas[name] = node_schema_from_object_info(name, _object_info(cls, name))
            except Exception as error:  # one broken node must not hide the others
                log.warning("node %s has no readable schema: %s", name, error)
        return schemas

    def validate(self, graph: Graph) -> None:
        self.start()
        validation = _comfy().execution.validate_prompt
        ok, error, _outputs, node_errors = self._on_thread(
            lambda: asyncio.run(validation(uuid.uuid4().hex, graph, None))
        ).result()
        invalid = _validation_error(ok, error, node_errors)
        if invalid is not None:
            raise invalid

    def upload_input(self, path: Path, name: str | None = None) -> str:
        """Copy a file into ComfyUI's input folder (as the remote backend's /upload/image does)."""
        from comfy_runtime.backends.remote import safe_upload_name

        self.start()
        safe = safe_upload_name(name or Path(path).name)
        target = Path(_comfy().folder_paths.get_input_directory()) / safe
        shutil.copyfile(path, target)
        return safe

    # -- running ---------------------------------------------------------------------------
    def run(
        self, graph: Graph, output_dir: Path, on_progress: ProgressCallback | None = None, timeout: float | None = None
    ) -> RunResult:
        self.start()
        self._refuse_while_stuck()
        output_dir = Path(output_dir).resolve()
        output_dir.mkdir(parents=True, exist_ok=True)
        with self._run_lock:
            self._cancel.clear()
            state = _RunState(uuid.uuid4().hex, graph, on_progress, self._cancel)
            if self.previews.on:
                state.previews = PreviewMaker(self.previews, output_dir / "previews")
            future = self._on_thread(self._execute, state, output_dir)
            seconds = self._wait_for(future, state, timeout)
        return self._outcome(state, output_dir, seconds)

    def _refuse_while_stuck(self) -> None:
        if self._stuck is not None and not self._stuck.done():
            raise ComfyRuntimeError(
                "an earlier run was cancelled or timed out and ComfyUI has not stopped it yet; restart this worker"
            )

    def _wait_for(self, future: Future, state: _RunState, timeout: float | None) -> float:
        """The run's execution seconds once it ends; past the time limit it is stopped (RunTimedOut), and on
        Cog's cancel (an exception raised into this thread) it is stopped before the exception goes on."""
        try:
            return _wait_interruptibly(future, time.monotonic() + timeout if timeout else None)
        except _DeadlinePassed:
            return self._stop_past_time_limit(future, state, timeout)
        except BaseException:
            self._stop_for_cancel(future)
            raise

    def _stop_past_time_limit(self, future: Future, state: _RunState, timeout: float | None) -> float:
        self.interrupt()
        try:  # interruptibly too: a Cog cancel during the grace period must land at once
            seconds = _wait_interruptibly(future, time.monotonic() + INTERRUPT_GRACE_SECONDS)
        except _DeadlinePassed:
            self._stuck = future
            raise RunTimedOut(timed_out_message(
                timeout, state, stuck=f"ComfyUI did not stop within {INTERRUPT_GRACE_SECONDS:g} s; restart this worker"
            )) from None
        if state.interrupted:
            raise RunTimedOut(timed_out_message(timeout, state)) from None
        return seconds  # it ended on its own while the interrupt was on its way: keep what it made

    def _stop_for_cancel(self, future: Future) -> None:
        """Stop ComfyUI before the cancel gives up the GPU; a run that outlives the grace marks this worker stuck."""
        self.interrupt()
        try:
            _wait_interruptibly(future, time.monotonic() + INTERRUPT_GRACE_SECONDS)
        except BaseException:  # the run's own outcome, the grace passing, or a second cancel
            pass
        if not future.done():
            self._stuck = future

    def _outcome(self, state: _RunState, output_dir: Path, seconds: float) -> RunResult:
        """The run's files, or the error that says how it ended."""
        if state.invalid is not None:
            raise state.invalid
        unfit = [fit for fit in state.lora_fits.values() if not fit.fits]
        if unfit:
            raise LoraDoesNotFit(unfit[0].problem())
        if state.interrupted:
            raise ExecutionInterrupted("the run was interrupted before it finished; nothing was saved")
        if state.failure is not None:
            if is_out_of_memory(state.failure):
                self._on_thread(self._free_memory).result()
                raise OutOfMemory(state.failure)
            raise NodeExecutionError(state.failure)
        ui_outputs = self._executor.history_result.get("outputs", {})
        files = collect_output_files(ui_outputs, {"output": output_dir, "temp": self._temp_dir()})
        return RunResult(prompt_id=state.prompt_id, files=files, ui_outputs=ui_outputs, execution_seconds=seconds,
                         lora_fits=self._lora_fits_of(state), cache_steps_skipped=state.cache_steps_skipped)

    def _lora_fits_of(self, state: _RunState) -> tuple[LoraFit, ...]:
        fits = []
        for node_id, node in state.graph.items():
            if node.get("class_type") not in ("LoraLoaderModelOnly", "LoraLoader"):
                continue
            inputs = node.get("inputs", {})
            key = (node_id, str(inputs.get("lora_name")), float(inputs.get("strength_model", 0) or 0))
            fit = state.lora_fits.get(node_id) or self._lora_fit_memo.get(key)
            if fit is not None:
                self._lora_fit_memo[key] = fit
                fits.append(fit)
        return tuple(fits)

    def _temp_dir(self) -> Path:
        return Path(_comfy().folder_paths.get_temp_directory())

    def _free_memory(self) -> None:
        """After an out-of-memory: unload every model and drop every cached node output, so the next run
        starts from a clean GPU (it reloads the weights, which is slower but cannot run out again for
        leftovers of the failed run)."""
        model_management = _comfy().model_management
        model_management.unload_all_models()
        self._executor.reset()
        gc.collect()
        model_management.soft_empty_cache()

    def _execute(self, state: _RunState, output_dir: Path) -> float:
        comfy = _comfy()
        comfy.folder_paths.set_output_directory(str(output_dir))
        # Temp files (previews) live in the run's folder too, so removing the folder removes them.
        comfy.folder_paths.set_temp_directory(str(output_dir / "temp"))
        self._sink.attach(state)
        _measuring.run = state
        # The hook is one ComfyUI global: claim it per run, or a runtime started later in this process
        # (a second Predictor) would receive this run's steps and its cancel would not land here.
        comfy.comfy_utils.set_progress_bar_global_hook(self._progress_hook)
        self._sink.last_prompt_id = state.prompt_id
        try:
            if self._cancel.is_set():
                state.interrupted = True
                return 0.0
            # Validation and execution share one event loop on this thread, as ComfyUI's /prompt does them
            # back to back: a second thread hop and loop per prediction would be pure wrapper overhead.
            return asyncio.run(self._validate_and_execute(state))
        finally:
            self._sink.attach(None)
            _measuring.run = None

    async def _validate_and_execute(self, state: _RunState) -> float:
        ok, error, outputs, node_errors = await _comfy().execution.validate_prompt(state.prompt_id, state.graph, None)
        state.invalid = _validation_error(ok, error, node_errors)
        if state.invalid is not None:
            return 0.0
        started = time.perf_counter()
        # A client id makes ComfyUI report "executing" per node, which drives our node events.
        await self._executor.execute_async(state.graph, state.prompt_id, {"client_id": "embedded"}, outputs)
        return time.perf_counter() - started

    def _progress_hook(self, value: int, total: int, preview: Any, prompt_id: str | None = None, node_id: str | None = None) -> None:
        comfy = _comfy()
        if node_id is None:
            context = comfy.get_executing_context()
            node_id = context.node_id if context is not None else self._sink.last_node_id
        if self._cancel.is_set():
            comfy.model_management.interrupt_current_processing(True)
        comfy.model_management.throw_exception_if_processing_interrupted()
        run = self._sink._run
        if run is not None:
            run.emit(StepProgress(node_id=node_id, class_type=run.class_of(node_id), step=int(value), total=int(total)))
            if isinstance(preview, preview_hook.LatentSnapshot) and run.previews is not None:
                _emit_preview(run, preview, int(value), int(total), node_id)

    def interrupt(self) -> None:
        self._cancel.set()
        if _comfy_modules is not None:
            _comfy().model_management.interrupt_current_processing(True)


def _emit_preview(run: _RunState, snapshot: preview_hook.LatentSnapshot, step: int, total: int,
                  node_id: str | None) -> None:
    maker = run.previews
    if not maker.due(step, total):
        return
    started = time.perf_counter()
    try:
        event = maker.make(preview_hook.frames_of(snapshot), step, total, node_id, started,
                           snapshot.tae_name or "latent2rgb")
    except Exception as error:  # a preview is a courtesy: the render goes on without it
        log.warning("preview at step %d/%d not made (%s: %s); no more previews this run", step, total,
                    type(error).__name__, error)
        run.previews = None
        return
    run.emit(event)


class _Measuring:
    """The run ComfyUI is executing now (one per process: ComfyUI's globals allow no other), for the measurements
    taken inside its nodes."""

    run: _RunState | None = None


_measuring = _Measuring()
_measurements_installed = False


def _install_measurements(comfy: _Comfy) -> None:
    """Wrap the two places whose outcome ComfyUI only logs: how much of a LoRA it applied, and how many steps a
    step cache skipped. Both call straight through to ComfyUI's own code."""
    global _measurements_installed
    if _measurements_installed:
        return
    loader = comfy.nodes.LoraLoader
    original_load = loader.load_lora

    def measured_load_lora(self, model, clip, lora_name, strength_model, strength_clip):
        result = original_load(self, model, clip, lora_name, strength_model, strength_clip)
        run = _measuring.run
        if run is None or model is None or strength_model == 0 or self.loaded_lora is None:
            return result  # strength 0: ComfyUI returns the model untouched, there is nothing to measure
        fit = measure_fit(_applied_lora(comfy, model, result[0], self.loaded_lora[1], lora_name))
        context = comfy.get_executing_context()
        run.lora_fits[str(context.node_id) if context is not None else lora_name] = fit
        if not fit.fits:
            raise LoraDoesNotFit(fit.problem())  # before sampling: the render would ignore the LoRA
        if fit.applied < fit.total:
            log.warning("%s", fit.problem())
        else:
            log.info("%s", fit.summary())
        return result

    loader.load_lora = measured_load_lora
    # ComfyUI imports its extra nodes under their file names, not as comfy_extras.*: reach the module in use.
    cache_node = comfy.nodes.NODE_CLASS_MAPPINGS.get("EasyCache")
    cache_module = sys.modules.get(cache_node.__module__) if cache_node is not None else None
    for holder in (getattr(cache_module, "EasyCacheHolder", None), getattr(cache_module, "LazyCacheHolder", None)):
        if holder is not None:
            holder.reset = _counting_reset(holder.reset)
    _measurements_installed = True


def _counting_reset(original_reset: Any) -> Any:
    # The holder counts the steps it skipped and zeroes the count in reset(), right after logging it at the end of
    # each sampling run (easycache_sample_wrapper): take the count on its way out.
    def reset(self):
        run = _measuring.run
        if run is not None:
            run.cache_steps_skipped = (run.cache_steps_skipped or 0) + int(self.total_steps_skipped)
        return original_reset(self)

    return reset


def _applied_lora(comfy: _Comfy, model: Any, patched: Any, lora: dict[str, Any], lora_name: str) -> AppliedLora:
    """What ComfyUI did with the file, from its own key map and the patches it added (the fit: lora/fit.py)."""
    added = frozenset(key for key, patches in patched.patches.items() if len(patches) > len(model.patches.get(key, ())))
    key_map = comfy.comfy_lora.model_lora_keys_unet(model.model, {})

    def target(layer: str) -> str | None:
        mapped = key_map.get(layer)
        return mapped[0] if isinstance(mapped, tuple) else mapped

    keys = tuple(comfy.lora_convert.convert_lora(lora).keys())
    return AppliedLora(str(lora_name), type(model.model).__name__, keys, target, added)


class _DeadlinePassed(Exception):
    pass


def _wait_interruptibly(future: Future, deadline: float | None = None) -> float:
    # A bare future.result() blocks in C, where an exception that Cog raises into this thread on cancel
    # would not land until the render ended; short waits give it a bytecode boundary to land on.
    while True:
        try:
            return future.result(timeout=0.05)
        except TimeoutError:
            if deadline is not None and time.monotonic() >= deadline:
                raise _DeadlinePassed() from None


def _validation_error(ok: bool, error: dict[str, Any] | None, node_errors: dict[str, Any]) -> WorkflowInvalidError | None:
    # validate_prompt says ok when at least one output node is valid and silently drops the others; a graph
    # that would run only in part is as wrong as one that would not run (and the remote check refuses it too).
    if ok and not node_errors:
        return None
    return WorkflowInvalidError(describe_validation_failure(error, node_errors), node_errors)
