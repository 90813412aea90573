"""Bundled workflows and their bindings, checked against the real ComfyUI node registry."""

import copy

import pytest

from comfy_runtime.graph.workflow import (
    BindingError,
    Target,
    Workflow,
    available_workflows,
    check_bindings,
    load_workflow,
)
from comfy_runtime.job.params import graph_input_ranges, graph_input_types


def test_bundled_workflows_have_sound_bindings(schemas):
    assert {"hunyuan_t2v", "hunyuan_i2v", "hunyuan15_720p_t2v", "plumbing_video"} <= set(available_workflows())
    for name in available_workflows():
        check_bindings(load_workflow(name), schemas, graph_input_types(), graph_input_ranges())


def test_every_bundled_workflow_validates_against_the_real_node_registry(runtime, session_dirs):
    """The placeholders are named as the manifest says: a workflow naming a file the manifest lacks fails here."""
    from comfy_runtime.render.plan import START_IMAGE_NAME
    from comfy_runtime.render.served_model import placeholder_image

    runtime.upload_input(placeholder_image(session_dirs["outputs"]), START_IMAGE_NAME)
    for name in available_workflows():
        runtime.validate(load_workflow(name).graph)


# What each model's workflows cannot use (refused when set): the rest of the inputs must all be bound.
CANNOT_USE = {
    "hunyuan_t2v": {"negative_prompt", "image"},  # guidance-distilled: no negative; the image goes to hunyuan_i2v
    "hunyuan_i2v": {"negative_prompt"},
    "hunyuan15_480p_distilled_t2v": {"negative_prompt", "guidance", "image"},  # cfg 1: no negative, no cfg
    "hunyuan15_480p_i2v_step_distilled": {"negative_prompt", "guidance"},  # cfg 1 too; image-to-video only
}


@pytest.mark.parametrize("name", [n for n in available_workflows() if n != "plumbing_video"])
def test_each_model_workflow_binds_every_input_it_can_use(name):
    workflow = load_workflow(name)
    cannot = CANNOT_USE.get(name, set() if workflow.takes_image else {"image"})
    assert set(workflow.bindings) == set(graph_input_types()) - cannot
    assert workflow.model, f"{name} must name its model in a [model] table"


def test_hunyuan_binds_every_input_and_uses_core_nodes_only(schemas):
    workflow = load_workflow("hunyuan_t2v")
    assert set(workflow.bindings) == set(graph_input_types()) - CANNOT_USE["hunyuan_t2v"]
    core = {
        "UNETLoader", "DualCLIPLoader", "VAELoader", "CLIPTextEncode", "FluxGuidance", "ModelSamplingSD3",
        "BasicGuider", "KSamplerSelect", "BasicScheduler", "RandomNoise", "EmptyHunyuanLatentVideo",
        "SamplerCustomAdvanced", "VAEDecodeTiled", "CreateVideo", "SaveVideo",
    }
    assert {node["class_type"] for node in workflow.graph.values()} == core


@pytest.mark.parametrize("name", [n for n in available_workflows() if n != "plumbing_video"])
def test_scheduler_takes_the_shifted_model(name):
    """The flow-shift trap: a scheduler fed by the loader never sees ModelSamplingSD3's shift (every stage)."""
    graph = load_workflow(name).graph
    schedulers = [n for n in graph.values() if n["class_type"] == "BasicScheduler"]
    assert schedulers
    for scheduler in schedulers:
        assert graph[scheduler["inputs"]["model"][0]]["class_type"] == "ModelSamplingSD3"


def _with_binding(workflow: Workflow, name: str, target: Target) -> Workflow:
    bindings = dict(workflow.bindings)
    bindings[name] = (target,)
    return Workflow(workflow.name, copy.deepcopy(workflow.graph), bindings)


@pytest.mark.parametrize(
    "target,expected",
    [
        (Target("999", "steps"), "has no node '999'"),
        (Target("33", "stepz"), "BasicScheduler has no input 'stepz'"),
        (Target("33", "model"), "fed by a link"),
        (Target("20", "text"), "takes STRING, not int"),
    ],
)
def test_a_bad_binding_fails_naming_it(schemas, target, expected):
    workflow = _with_binding(load_workflow("hunyuan_t2v"), "steps", target)
    with pytest.raises(BindingError) as error:
        check_bindings(workflow, schemas, graph_input_types(), graph_input_ranges())
    assert expected in str(error.value) and "binding 'steps'" in str(error.value)


def test_an_unknown_class_or_input_name_fails(schemas):
    workflow = load_workflow("hunyuan_t2v")
    graph = copy.deepcopy(workflow.graph)
    graph["33"]["class_type"] = "BasicSchedulerTypo"
    with pytest.raises(BindingError, match="no node class 'BasicSchedulerTypo'"):
        check_bindings(Workflow("w", graph, workflow.bindings), schemas, graph_input_types(), graph_input_ranges())
    with pytest.raises(BindingError, match="no predict\\(\\) input has that name"):
        check_bindings(_with_binding(workflow, "stepz", Target("33", "steps")), schemas, graph_input_types(), graph_input_ranges())


def test_a_declared_range_the_node_cannot_take_fails(schemas):
    with pytest.raises(BindingError, match="predict\\(\\) allows 1..500"):
        check_bindings(load_workflow("hunyuan_t2v"), schemas, graph_input_types(), {**graph_input_ranges(), "fps": (1, 500)})


def test_render_sets_bound_values_and_a_unique_prefix():
    workflow = load_workflow("hunyuan_t2v")
    graph = workflow.render({"prompt": "a fox", "steps": 12, "seed": None}, filename_prefix="run42")
    assert graph["20"]["inputs"]["text"] == "a fox"
    assert graph["33"]["inputs"]["steps"] == 12
    assert graph["34"]["inputs"]["noise_seed"] == workflow.graph["34"]["inputs"]["noise_seed"]
    assert graph["61"]["inputs"]["filename_prefix"] == "run42"
    assert workflow.graph["20"]["inputs"]["text"] != "a fox", "render must not mutate the bundled graph"


def test_unknown_workflow_name_lists_the_known_ones():
    with pytest.raises(BindingError, match="HV_WORKFLOW must be one of"):
        load_workflow("nope")
