"""The lean boot (HV_BOOT=lean, backends/boot_plan.py): only the node modules the served workflows need, imports
nothing uses before a run deferred; every bundled workflow still validates against what is loaded, and a workflow
needing a node that is not loaded fails at setup naming it.

The planning is checked against the real, fully loaded registry of this process (which module defines each class);
the lean boots themselves run in processes of their own (ComfyUI's registry is one per process).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from comfy_runtime.backends import boot_plan
from comfy_runtime.backends.boot_plan import NodesNotLoaded, classes_of, extra_node_files, plan_for
from comfy_runtime.graph.frame_tap import add_frame_tap
from comfy_runtime.graph.model_chain import add_cache, apply_dit_settings
from comfy_runtime.graph.workflow import WORKFLOWS_DIR, available_workflows, load_workflow
from comfy_runtime.job.params import CACHE_LEVELS
from comfy_runtime.lora.graph import NOT_FETCHED, add_lora
from comfy_runtime.settings import PROJECT_ROOT
from tests.support.predictor import booted_predictor
from tests.support.tiny_hunyuan15 import write_tiny_family, write_tiny_models


def _defining_file(cls) -> str | None:
    """The comfy_extras file a registered class comes from (None: nodes.py itself or a custom node)."""
    module = sys.modules.get(cls.__module__)
    path = Path(getattr(module, "__file__", "") or "")
    return path.name if path.parent.name == "comfy_extras" else None


def _core(nodes) -> set[str]:
    return {name for name, cls in nodes.NODE_CLASS_MAPPINGS.items() if cls.__module__ == "nodes"}


def test_the_extra_node_list_is_comfyuis_own(runtime):
    files = extra_node_files(runtime.comfyui_path)
    assert len(files) > 50 and files[0] == "nodes_latent.py" and "nodes_video.py" in files
    assert all((runtime.comfyui_path / "comfy_extras" / name).is_file() for name in files)


@pytest.mark.parametrize("name", available_workflows())
def test_the_plan_for_each_bundled_model_starts_every_module_its_graphs_and_run_plan_use(runtime, name):
    import nodes

    runtime.start()
    family = load_workflow(name).family()
    plan = plan_for(runtime.comfyui_path, classes_of(w.graph for w in family), _core(nodes))
    for cls in sorted(plan.classes):
        if cls.startswith("HV"):  # the test node pack (a custom node: always loaded whole)
            continue
        assert cls in nodes.NODE_CLASS_MAPPINGS, f"{name}: {cls} is not a ComfyUI node class"
        defined_in = _defining_file(nodes.NODE_CLASS_MAPPINGS[cls])
        assert defined_in is None or defined_in in plan.extra_files, f"{name}: {cls} is in {defined_in}, not started"
    assert len(plan.extra_files) < len(extra_node_files(runtime.comfyui_path)) / 4  # lean: a few of ~85


def test_every_class_the_run_plan_can_add_is_in_the_plan():
    graph = load_workflow("hunyuan15_720p_t2v").graph
    variants = [add_cache(graph, level) for level in CACHE_LEVELS]
    variants += [add_lora(graph, NOT_FETCHED, 1.0), add_frame_tap(graph, "tap")[0],
                 apply_dit_settings(graph, "fp8_e4m3fn", compile_model=True)]
    added = classes_of(variants) - classes_of([graph])
    assert added and added <= boot_plan.PLAN_ADDED_CLASSES, sorted(added - boot_plan.PLAN_ADDED_CLASSES)


def _lean_probe(env: dict[str, str], *args: str) -> dict:
    done = subprocess.run([sys.executable, "-m", "tests.support.lean_boot_probe", *args], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, **env, "HV_BOOT": "lean", "PYTHONPATH": str(PROJECT_ROOT)})
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_lean_boot_serves_the_whole_1_5_family_validated_with_a_few_node_modules(hv_env, session_dirs, runtime,
                                                                                     tmp_path):
    # Setup validates every served workflow (t2v, i2v, both 1080p chains) against the lean registry: the production
    # graphs with only the CPU-impossible loaders swapped for the test pack's stand-ins (tests/support).
    write_tiny_models(session_dirs["models"])
    workflows = write_tiny_family(tmp_path / "workflows", "hunyuan15_720p_t2v")
    report = _lean_probe({**hv_env, "HV_WORKFLOW": "hunyuan15_720p_t2v", "HV_UPSCALE": "true",
                          "HV_WORKFLOWS_DIR": str(workflows)})
    assert report["served"] == ["hunyuan15_720p_i2v", "hunyuan15_720p_i2v_1080p", "hunyuan15_720p_t2v",
                                "hunyuan15_720p_t2v_1080p"]
    every = extra_node_files(runtime.comfyui_path)
    print(f"lean 1.5 720p + 1080p: {len(report['extras'])} of {len(every)} extra node modules: {report['extras']}")
    assert "nodes_hunyuan.py" in report["extras"] and len(report["extras"]) < len(every) / 4
    # Its text encoders need transformers: run at setup (warm_for), so it is not left for the first run.
    assert set(report["deferred"]) == set(boot_plan.DEFERRED_IMPORTS)


def test_a_lean_plumbing_boot_renders_and_a_deferred_module_runs_when_used(hv_env):
    report = _lean_probe(hv_env, "render")
    assert report["served"] == ["plumbing_video"]
    # The run needed none of them; transformers never ran, so neither did its import of torch.distributed.tensor.
    assert set(report["deferred_after_run"]) == (set(boot_plan.DEFERRED_IMPORTS) - {"torch.distributed.tensor"}
                                                 | {"transformers"})
    assert report["box_area"] == "torchvision.ops.boxes"
    assert "torchvision.ops" not in report["deferred_after_use"]


def test_the_full_boot_starts_every_extra_node_module(runtime):
    from comfy_runtime.backends import embedded

    runtime.start()  # the session's runtime: HV_BOOT=full, as ComfyUI starts its nodes itself
    assert runtime.boot == "full" and set(extra_node_files(runtime.comfyui_path)) <= embedded._extras_started


def test_a_workflow_needing_a_node_that_is_not_loaded_fails_at_setup_naming_it(hv_env, runtime, tmp_path):
    folder = tmp_path / "workflows"
    folder.mkdir()
    graph = json.loads((WORKFLOWS_DIR / "plumbing_video.json").read_text())
    graph["3"]["class_type"] = "HVNoSuchVideoNode"
    (folder / "plumbing_video.json").write_text(json.dumps(graph))
    shutil.copyfile(WORKFLOWS_DIR / "plumbing_video.bindings.toml", folder / "plumbing_video.bindings.toml")
    with pytest.raises(NodesNotLoaded, match=r"HVNoSuchVideoNode \(workflow plumbing_video\) not loaded") as error:
        booted_predictor({**hv_env, "HV_WORKFLOWS_DIR": str(folder), "HV_BOOT": "lean"})
    assert "custom_nodes.lock" in str(error.value) and "HV_BOOT=full" in str(error.value)


def test_the_lean_boot_reads_comfyuis_compiled_modules_from_beside_the_tree_and_recompiles_a_changed_one(tmp_path):
    tree = tmp_path / "comfyui"
    (tree / "pack").mkdir(parents=True)
    (tree / "pack" / "__init__.py").write_text("")
    module = tree / "pack" / "cached.py"
    module.write_text("VALUE = 1\n")
    folder = boot_plan.compile_bytecode(tree)
    assert folder == tmp_path / "comfyui.bytecode" and not (tree / "pack" / "__pycache__").exists()  # tree untouched
    # Same size and mtime, other text: Python's own check passes, so the value proves the cached code ran.
    stat = module.stat()
    module.write_text("VALUE = 2\n")
    os.utime(module, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    probe = ("import sys; from pathlib import Path; from comfy_runtime.backends import boot_plan; "
             f"assert boot_plan.use_bytecode(Path({str(tree)!r})); sys.path.insert(0, {str(tree)!r}); "
             "import pack.cached as m; print(m.VALUE, type(m.__spec__.loader).__mro__[1].__name__)")

    def run() -> str:
        done = subprocess.run([sys.executable, "-c", probe], cwd=PROJECT_ROOT, capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    assert run() == "1 _PrefixedBytecodeLoader"
    # A namespace package (no __init__.py), as ComfyUI's comfy/, comfy_extras/, comfy_api/: read from the folder too.
    (tree / "spaced").mkdir()
    (tree / "spaced" / "plain.py").write_text("VALUE = 4\n")
    boot_plan.compile_bytecode(tree)
    assert subprocess.run([sys.executable, "-c", probe.replace("pack.cached", "spaced.plain")], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
                          timeout=60).stdout.strip() == "4 _PrefixedBytecodeLoader"
    module.write_text("VALUE = 3  # edited\n")  # another size and mtime: stale, compiled from source
    assert run() == "3 _PrefixedBytecodeLoader"
    assert not (tree / "pack" / "__pycache__").exists()


_NAMES_PROBE = """
import json, sys
from comfy_runtime.backends import boot_plan
boot_plan.defer_imports()
from transformers import CLIPTokenizer, LlamaTokenizerFast
import tokenizers
report = {"bound_unrun": boot_plan.deferred_now(), "warm_plumbing": boot_plan.warm_for({"LoadImage", "CreateVideo"})}
report["still"] = "transformers" in boot_plan.deferred_now()
if sys.argv[1] == "use":
    class Sub(LlamaTokenizerFast):  # subclassing a stand-in subclasses the real class
        pass
    real = sys.modules["transformers"].models.clip.CLIPTokenizer
    report.update(name=CLIPTokenizer.__name__, same=CLIPTokenizer._resolve() is real, sub=issubclass(Sub, LlamaTokenizerFast),
                  isinstance=isinstance(1, CLIPTokenizer), version=sys.modules["transformers"].__version__)
else:
    report["warm_hunyuan"] = boot_plan.warm_for({"CLIPLoader", "KSampler"})
    report["resolved"] = [type(name).__name__ for name in (CLIPTokenizer, LlamaTokenizerFast)]
    report["real_after"] = isinstance(object.__getattribute__(CLIPTokenizer, "_hv_real"), type)
report["left"] = boot_plan.deferred_now()
print(json.dumps(report))
"""


@pytest.mark.parametrize("how", ["use", "warm"])
def test_transformers_names_are_stand_ins_until_used_and_a_text_encoder_workflow_runs_it_at_setup(how):
    done = subprocess.run([sys.executable, "-c", _NAMES_PROBE, how], cwd=PROJECT_ROOT, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)})
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert "transformers" in report["bound_unrun"] and report["warm_plumbing"] == [] and report["still"]
    assert "transformers" not in report["left"]  # used, or warmed: it ran
    if how == "use":
        assert report["name"] == "CLIPTokenizer" and report["same"] and report["sub"] and not report["isinstance"]
        assert report["version"].count(".") >= 1
    else:
        assert report["warm_hunyuan"] == ["transformers"] and report["real_after"] is True


def test_a_submodule_import_of_a_deferred_package_runs_the_package_first():
    probe = ("from comfy_runtime.backends import boot_plan; boot_plan.defer_imports(); import transformers; "
             "assert 'transformers' in boot_plan.deferred_now(); import transformers.utils.logging as l; "
             "import sys; assert 'transformers' not in boot_plan.deferred_now(); "
             "print(sys.modules['transformers'].utils.logging is l, hasattr(sys.modules['transformers'], 'AutoConfig'))")
    done = subprocess.run([sys.executable, "-c", probe], cwd=PROJECT_ROOT, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)})
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "True True"


_CLIP_TOKENS_PROBE = """
import json, sys
from comfy_runtime.backends import boot_plan
if sys.argv[1] == "lean":
    boot_plan.defer_imports()
sys.path.insert(0, sys.argv[2])
import comfy.options  # noqa: F401
from comfy.cli_args import args
args.cpu = True
import comfy.sd1_clip
unrun = "transformers" in boot_plan.deferred_now()
tokenizer = comfy.sd1_clip.SDTokenizer()  # ComfyUI's own CLIP tokenizer, through the CLIPTokenizer it bound
print(json.dumps({"unrun_at_import": unrun, "tokens": [tokenizer.tokenize_with_weights(text) for text in
                                                       ("a cat on a mat", "HunyuanVideo, 4k, (slow pan:1.2), dusk")]}))
"""


def test_comfyuis_clip_tokenizer_through_the_stand_in_gives_the_same_tokens(runtime):
    def tokens(mode: str) -> dict:
        done = subprocess.run([sys.executable, "-c", _CLIP_TOKENS_PROBE, mode, str(runtime.comfyui_path)],
                              cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=180,
                              env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)})
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    lean, full = tokens("lean"), tokens("full")
    assert lean["unrun_at_import"] and not full["unrun_at_import"]
    assert lean["tokens"] == full["tokens"] and len(lean["tokens"][0][0]) == 77
