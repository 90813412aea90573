"""The lean boot (HV_BOOT=lean, the default): start only what the served workflows need, sooner.

Measured on the 2-core box (bench/boot_phases.py), a full embedded boot spends its time in three places: torch's
import, ComfyUI's own modules (nodes.py -> comfy.model_base -> comfy.ldm.cosmos -> torchvision, whose models/ops
packages import torch._dynamo: ~2 s; comfy.samplers -> scipy.stats), and starting all ~85 comfy_extras node modules.
The lean boot changes neither ComfyUI's files nor what runs:

- **Node modules**: of comfy_extras it starts only the modules that define a node class the served workflows use,
  or one the run plan may add (PLAN_ADDED_CLASSES: cache, LoRA, frame tap, compile), through ComfyUI's own
  `nodes.load_custom_node`. The list of modules is ComfyUI's own (read from init_builtin_extra_nodes in its
  nodes.py), a class is matched to the modules whose source names it, and after loading every needed class must
  be registered, or setup fails naming it (never a run). Custom nodes (the lock's, HV_EXTRA_CUSTOM_NODES) all load.
- **Deferred imports** (DEFERRED_IMPORTS): packages ComfyUI imports at start-up that nothing uses before a run, and
  most runs never: each is registered as a module whose code runs on its first attribute access (a real import,
  just later), so a graph that does use it still gets it. transformers (DEFERRED_NAMES), whose classes ComfyUI binds
  by name at import, hands out stand-ins instead, and runs at setup when a served workflow may load a text encoder.

- **ComfyUI's bytecode**: the tree ships without compiled modules (the wheel's extraction, comfy-cli's clone), so
  every boot compiled ~130k lines of it again. Provisioning compiles it once into `<tree>.bytecode/` (the layout of
  PYTHONPYCACHEPREFIX: `python -m compileall` writes it; cog.yaml does the same at build), and the lean boot reads
  it there: a module whose source changed since (a patch, an edit) fails Python's own mtime/size check and is
  compiled from source as before. The tree itself is left as it was.

HV_BOOT=full keeps today's boot (every extra node module, every import up front, every module compiled from
source): the bench compares the two.
"""

from __future__ import annotations

import ast
import importlib.abc
import importlib.machinery
import logging
import os
import re
import subprocess
import sys
import threading
import types
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from comfy_runtime.errors import ComfyRuntimeError

log = logging.getLogger(__name__)

# Import name -> why deferring it is safe. ComfyUI imports these at start-up only to reach something else: torchvision
# for `torchvision.transforms` (cosmos), which drags in torchvision.models/ops -> torch._dynamo; transformers (for its
# tokenizers) imports torch.distributed.tensor; scipy.stats for the "beta" scheduler alone; scipy.integrate for one
# k-diffusion sampler's (lms) coefficients. Code that does use one (torch.compile imports torch._dynamo itself) runs
# it then: a deferral moves the cost to the first use, never skips the code.
DEFERRED_IMPORTS: dict[str, str] = {
    "torchvision.models": "classification backbones: no node of the served workflows builds one",
    "torchvision.ops": "detection ops (roi_align ...), whose import pulls in torch._dynamo (~1.5 s)",
    "torchvision.datasets": "dataset loaders: never used by a render",
    "torchvision.io": "torchvision's video/image codecs: ComfyUI decodes with PyAV",
    "torch.distributed.tensor": "DTensor: transformers' model-debugging toolbox imports it (~1 s with sympy); a "
                                "render in one process never makes one",
    "scipy.stats": "only the beta scheduler calls it (comfy/samplers.py)",
    "scipy.integrate": "only the lms sampler's coefficients call it (comfy/k_diffusion/sampling.py)",
}

# Packages ComfyUI imports at start-up only for names it binds and calls later: `from transformers import
# CLIPTokenizer` (comfy.sd1_clip and 14 text encoders) runs transformers' package (~0.8-1.5 s: it scans all of its
# model folders' sources, then imports requests, huggingface_hub ...) for tokenizer classes that are only called
# when a text encoder loads. Such a package is registered unrun and each name taken from it is a stand-in that
# imports it and becomes the real object on first use (a call, an attribute, isinstance, subclassing). A served
# workflow that has a node in the set (a text-encoder or checkpoint loader) gets the package run and every handed-out
# name resolved at setup (warm_for), so its first run pays nothing more than before; one without (plumbing) never
# runs it. A submodule import (`import transformers.utils`) runs the package first, as Python would.
DEFERRED_NAMES: dict[str, frozenset[str]] = {
    "transformers": frozenset({
        "CLIPLoader", "DualCLIPLoader", "TripleCLIPLoader", "QuadrupleCLIPLoader", "CheckpointLoaderSimple",
        "CheckpointLoader", "unCLIPCheckpointLoader", "ImageOnlyCheckpointLoader", "CLIPVisionLoader",
        "DiffusersLoader", "CLIPTextEncode", "TextEncodeHunyuanVideo_ImageToVideo",
    }),
}

# Classes the run plan adds to a served graph at run time (graph/model_chain.py, lora/graph.py, graph/frame_tap.py):
# they must be loaded at setup, or a request using them would fail at run time.
PLAN_ADDED_CLASSES: frozenset[str] = frozenset({
    "EasyCache", "LazyCache",  # cache= (model_chain.add_cache)
    "TorchCompileModel",  # HV_TORCH_COMPILE (model_chain.apply_dit_settings)
    "LoraLoaderModelOnly",  # lora_url (lora/graph.py)
    "SaveAnimatedPNG",  # the lossless frame tap (graph/frame_tap.py)
})


class NodesNotLoaded(ComfyRuntimeError):
    """A served workflow needs a node class the lean boot did not load (or no module defines)."""


# -- deferred imports ------------------------------------------------------------------------------------------------
class _DeferredModule(types.ModuleType):
    """A module whose code has not run yet: the first attribute it lacks runs it (with its real loader), then it is
    a plain module. Dunder lookups (inspect.getmodule walks sys.modules asking for __file__) do not trigger it."""

    def __getattr__(self, name: str):
        state = self.__dict__
        if name.startswith("__") and name.endswith("__") or state.get("__hv_running__"):
            raise AttributeError(name)
        _run_late(self, _DeferredModule)
        return getattr(self, name)


class _NamesModule(types.ModuleType):
    """A package whose code has not run yet (DEFERRED_NAMES): each name asked of it is a _DeferredName stand-in; a
    dunder it lacks (__version__, __all__) runs it first."""

    def __getattr__(self, name: str):
        state = self.__dict__
        if name.startswith("__") and name.endswith("__"):
            # While the import system sets it up (no loader yet), or while it runs, a missing dunder is just missing.
            if "__hv_loader__" not in state or name in ("__path__", "__file__", "__wrapped__") \
                    or state.get("__hv_running__"):
                raise AttributeError(name)
            return getattr(_run_names_module(self), name)
        if state.get("__hv_running__"):
            raise AttributeError(name)
        names = state.setdefault("__hv_names__", {})
        if name not in names:
            names[name] = _DeferredName(self, name)
        return names[name]


def _run_names_module(module: types.ModuleType) -> types.ModuleType:
    return _run_late(module, _NamesModule)


def _run_late(module: types.ModuleType, deferred: type) -> types.ModuleType:
    """Run a deferred module's code once (the first thread to ask runs it, the others wait), and make it a plain
    module again."""
    with _RUN_LOCK:
        state = module.__dict__
        if type(module) is deferred and not state.get("__hv_running__"):
            state["__hv_running__"] = True
            loader = state["__hv_loader__"]
            try:
                loader.exec_module(module)
            finally:
                state.pop("__hv_running__", None)
            module.__spec__.loader = module.__loader__ = loader
            module.__class__ = types.ModuleType
            RAN_LATE.append(module.__name__)
    # A package may put another object in its place in sys.modules as it runs (transformers: its _LazyModule).
    return sys.modules.get(module.__name__, module)


class _DeferredName:
    """`from <deferred package> import Name`: the package runs and the real object is looked up on first use."""

    __slots__ = ("_hv_module", "_hv_name", "_hv_real")

    def __init__(self, module: types.ModuleType, name: str):
        object.__setattr__(self, "_hv_module", module)
        object.__setattr__(self, "_hv_name", name)

    def _resolve(self):
        try:
            return object.__getattribute__(self, "_hv_real")
        except AttributeError:
            real = getattr(_run_names_module(object.__getattribute__(self, "_hv_module")),
                           object.__getattribute__(self, "_hv_name"))
            object.__setattr__(self, "_hv_real", real)
            return real

    def __getattr__(self, name: str):
        return getattr(self._resolve(), name)

    def __call__(self, *args, **kwargs):
        return self._resolve()(*args, **kwargs)

    def __instancecheck__(self, instance) -> bool:
        return isinstance(instance, self._resolve())

    def __subclasscheck__(self, subclass) -> bool:
        return issubclass(subclass, self._resolve())

    def __mro_entries__(self, bases):
        return (self._resolve(),)

    def __repr__(self) -> str:
        return f"<deferred {object.__getattribute__(self, '_hv_module').__name__}.{object.__getattribute__(self, '_hv_name')}>"


_RUN_LOCK = threading.RLock()
RAN_LATE: list[str] = []  # deferred modules whose code has since run (boot phases, tests)


class _DeferringLoader(importlib.abc.Loader):
    def __init__(self, real: importlib.abc.Loader, kind: type[types.ModuleType] = _DeferredModule):
        self.real = real
        self.kind = kind

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        return self.kind(spec.name)

    def exec_module(self, module: types.ModuleType) -> None:
        module.__dict__["__hv_loader__"] = self.real


class _AlreadyLoaded(importlib.abc.Loader):
    """Hands the import system a module that is already imported, as it was (its own spec kept)."""

    def __init__(self, module: types.ModuleType):
        self.module, self.spec = module, module.__spec__

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        return self.module

    def exec_module(self, module: types.ModuleType) -> None:
        module.__spec__ = self.spec  # its own spec back


class _DeferringFinder(importlib.abc.MetaPathFinder):
    def __init__(self, names: Iterable[str], packages: Iterable[str] = ()):
        self.packages = frozenset(packages)
        self.names = frozenset(names) | self.packages

    def find_spec(self, name, path, target=None):
        parent = name.partition(".")[0]
        if parent in self.packages and parent != name and type(sys.modules.get(parent)) is _NamesModule:
            _run_names_module(sys.modules[parent])  # a submodule: its package's code runs first, as on a plain import
            if name in sys.modules:  # which imported this one already: hand that module over, do not run it twice
                module = sys.modules[name]
                # The import system takes the spec of a module already in sys.modules: a stand-in one, until loaded.
                module.__spec__ = importlib.machinery.ModuleSpec(name, _AlreadyLoaded(module))
                return module.__spec__
            return None
        if name not in self.names:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                if isinstance(spec.loader, importlib.machinery.SourceFileLoader | importlib.machinery.SourcelessFileLoader):
                    spec.loader = _DeferringLoader(spec.loader, _NamesModule if name in self.packages else _DeferredModule)
                return spec
        return None


def defer_imports(names: Iterable[str] = DEFERRED_IMPORTS) -> None:
    """Register the deferral (once per process, before ComfyUI is imported; a module already imported stays as is)."""
    if not any(isinstance(finder, _DeferringFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _DeferringFinder(names, DEFERRED_NAMES))


def warm_for(classes: Iterable[str] | None) -> list[str]:
    """Run the DEFERRED_NAMES packages the served classes may use (None: any may be served) and resolve the names
    handed out of them, at setup: the first run then pays what it paid before. Returns those run."""
    served = None if classes is None else frozenset(classes)
    ran = []
    for package, users in DEFERRED_NAMES.items():
        module = sys.modules.get(package)
        if type(module) is not _NamesModule or (served is not None and not served & users):
            continue
        for stand_in in list(module.__dict__.get("__hv_names__", {}).values()):
            stand_in._resolve()
        _run_names_module(module)
        ran.append(package)
    return ran


def deferred_now() -> list[str]:
    """The deferred modules whose code has not run (yet)."""
    return sorted(name for name, module in sys.modules.items() if type(module) in (_DeferredModule, _NamesModule))


# -- ComfyUI's bytecode ----------------------------------------------------------------------------------------------
def bytecode_dir(comfyui_path: Path) -> Path:
    """Where ComfyUI's compiled modules are kept, beside the tree (PYTHONPYCACHEPREFIX's layout)."""
    return comfyui_path.parent / f"{comfyui_path.name}.bytecode"


def compile_bytecode(comfyui_path: Path) -> Path:
    """Compile the tree's modules into bytecode_dir (timestamp-checked .pyc, as Python's own cache)."""
    target = bytecode_dir(comfyui_path)
    done = subprocess.run([sys.executable, "-m", "compileall", "-q", "-j", "0", str(comfyui_path)],
                          env={**os.environ, "PYTHONPYCACHEPREFIX": str(target)}, capture_output=True, text=True)
    if done.returncode != 0:  # such a module is compiled from source at import (and fails there, if imported)
        log.warning("some of %s's modules did not compile (%s); the boot compiles those from source",
                    comfyui_path, (done.stdout + done.stderr).strip()[-300:])
    return target


class _PrefixedBytecodeLoader(importlib.machinery.SourceFileLoader):
    """SourceFileLoader for a file of the tree, reading (never writing) its .pyc from the bytecode folder."""

    prefix = ""

    def get_data(self, path: str) -> bytes:
        if path.endswith(".pyc"):
            folder, name = os.path.split(path)  # <dir>/__pycache__/<module>.cpython-311.pyc
            path = os.path.join(self.prefix, os.path.dirname(folder).lstrip(os.sep), name)
        return super().get_data(path)

    def set_data(self, path: str, data: bytes, *, _mode: int = 0o666) -> None:
        pass  # the folder is written by compile_bytecode only: a boot never writes next to the source


class _BytecodeFinder(importlib.abc.MetaPathFinder):
    def __init__(self, tree: Path, prefix: Path):
        self.tree = str(tree) + os.sep
        self.loader = type("_Loader", (_PrefixedBytecodeLoader,), {"prefix": str(prefix)})
        # Only the tree's own top-level modules and packages are looked up here; every other name goes on to the
        # next finder untouched (the deferred imports among them). ComfyUI's biggest packages (comfy, comfy_extras,
        # comfy_api, comfy_execution) have no __init__.py: namespace packages, whose modules are found here too.
        self.top_level = frozenset(entry.stem if entry.suffix == ".py" else entry.name for entry in tree.iterdir()
                                   if entry.suffix == ".py" or _holds_modules(entry))

    def find_spec(self, name, path, target=None):
        if name.partition(".")[0] not in self.top_level:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path, target)
        if spec is None or not (spec.origin or "").startswith(self.tree):
            return None  # the same name elsewhere on sys.path: the next finder finds it as before
        if type(spec.loader) is importlib.machinery.SourceFileLoader:
            spec.loader = self.loader(name, spec.origin)
        return spec


def _holds_modules(folder: Path) -> bool:
    """A regular package, or a namespace package (a folder of .py files without __init__.py)."""
    return folder.is_dir() and folder.name.isidentifier() and next(folder.glob("*.py"), None) is not None


def use_bytecode(comfyui_path: Path) -> bool:
    """Read ComfyUI's modules' bytecode from bytecode_dir when it is there (once per process, before the import)."""
    prefix = bytecode_dir(comfyui_path)
    if not prefix.is_dir() or any(isinstance(f, _BytecodeFinder) for f in sys.meta_path):
        return False
    sys.meta_path.insert(0, _BytecodeFinder(comfyui_path.resolve(), prefix.resolve()))
    return True


# -- node modules ----------------------------------------------------------------------------------------------------
@cache
def extra_node_files(comfyui_path: Path) -> tuple[str, ...]:
    """comfy_extras' node files in the order ComfyUI's init_builtin_extra_nodes starts them (read from its nodes.py:
    ComfyUI's own list, not ours)."""
    tree = ast.parse((comfyui_path / "nodes.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.AsyncFunctionDef | ast.FunctionDef) and node.name == "init_builtin_extra_nodes":
            for statement in ast.walk(node):
                if (isinstance(statement, ast.Assign) and isinstance(statement.value, ast.List)
                        and any(isinstance(t, ast.Name) and t.id == "extras_files" for t in statement.targets)):
                    return tuple(item.value for item in statement.value.elts if isinstance(item, ast.Constant))
    raise NodesNotLoaded(
        f"{comfyui_path / 'nodes.py'} has no extras_files list in init_builtin_extra_nodes (another ComfyUI layout): "
        "set HV_BOOT=full, which starts ComfyUI's extra nodes its own way"
    )


@cache
def _named_in(comfyui_path: Path, file: str) -> frozenset[str]:
    source = (comfyui_path / "comfy_extras" / file).read_text(errors="replace")
    return frozenset(re.findall(r"""["']([A-Za-z_][A-Za-z0-9_+ .-]*)["']""", source))


@dataclass(frozen=True)
class BootPlan:
    classes: frozenset[str]  # node classes the served workflows (and the run plan) use
    extra_files: tuple[str, ...]  # comfy_extras files to start, in ComfyUI's order


def plan_for(comfyui_path: Path, classes: Iterable[str], core: Iterable[str]) -> BootPlan:
    """The comfy_extras files to start for `classes` (core: the classes nodes.py itself defines)."""
    wanted = frozenset(classes) | PLAN_ADDED_CLASSES
    outside_core = wanted - frozenset(core)
    files = tuple(file for file in extra_node_files(comfyui_path) if _named_in(comfyui_path, file) & outside_core)
    return BootPlan(wanted, files)


def classes_of(graphs: Iterable[dict]) -> frozenset[str]:
    return frozenset(str(node.get("class_type", "")) for graph in graphs for node in graph.values())


def missing_classes(plan: BootPlan, registered: Iterable[str]) -> list[str]:
    return sorted(plan.classes - PLAN_ADDED_CLASSES - frozenset(registered))


def not_loaded_error(missing: list[str], workflows: dict[str, set[str]]) -> NodesNotLoaded:
    uses = "; ".join(f"{cls} (workflow {', '.join(sorted(names))})" for cls, names in
                     ((cls, {w for w, used in workflows.items() if cls in used}) for cls in missing))
    return NodesNotLoaded(
        f"node class(es) {uses} not loaded: no comfy_extras module or custom node defines them. Check the class name "
        "in the workflow, install the custom node that provides it (custom_nodes.lock), or set HV_BOOT=full"
    )
