"""The planner (render/plan.py): one request and the served model in, the run plan out, with no side effects.

The planner never touches the runtime (it is None here) and writes nothing: ComfyUI runs in the tests that
render (test_predictor.py, test_tiny_dit.py).
"""

from __future__ import annotations

import pytest
from PIL import Image

from comfy_runtime.graph.workflow import load_workflow
from comfy_runtime.job.budget import MemoryBudget, OverBudget
from comfy_runtime.job.limits import JobLimits
from comfy_runtime.job.request import VideoRequest
from comfy_runtime.render.model_choice import ModelCannotUse
from comfy_runtime.render.plan import START_IMAGE_NAME, RunInputs, plan_run
from comfy_runtime.render.served_model import ServedModel
from tests.support.media import png_data_uri


@pytest.fixture
def model(tmp_path):
    return ServedModel(None, load_workflow("hunyuan15_720p_t2v"), tmp_path / "outputs")  # type: ignore[arg-type]


def test_what_the_caller_left_out_takes_the_workflows_default_and_what_they_set_stays_theirs(model, tmp_path):
    request = VideoRequest(prompt="a fox", width=640, height=368, num_frames=33)
    plan = plan_run(model, request, RunInputs(seed=42), run_id="0123456789abcdef")
    concrete = plan.request
    assert (concrete.width, concrete.height, concrete.num_frames) == (640, 368, 33)  # the caller's
    assert (concrete.steps, concrete.guidance, concrete.flow_shift, concrete.fps) == (50, 6.0, 9.0, 24)  # the workflow's
    assert concrete.seed == 42 and concrete.given == request.given == {"prompt", "width", "height", "num_frames"}
    assert plan.workflow.name == "hunyuan15_720p_t2v" and plan.prefix == "hunyuan15_720p_t2v_0123456789ab"
    for name, value in (("width", 640), ("height", 368), ("num_frames", 33), ("steps", 50), ("seed", 42)):
        for target in plan.workflow.bindings[name]:  # every node input the workflow binds it to
            assert plan.graph[target.node]["inputs"][target.input] == value, (name, target)
    assert plan.tap is not None and plan.tap.node_id in plan.graph  # the lossless frames, for the encoder
    assert not (tmp_path / "outputs").exists(), "planning writes nothing"


def test_the_limits_are_checked_in_the_plan_before_anything_runs(model, tmp_path):
    with pytest.raises(ModelCannotUse, match="num_frames=125 is over what"):
        plan_run(model, VideoRequest(prompt="a fox", num_frames=125), RunInputs(seed=1), run_id="r" * 32)
    small = ServedModel(None, model.workflow, tmp_path / "outputs", JobLimits(MemoryBudget(64 * 64 * 9, "set")))  # type: ignore[arg-type]
    assert plan_run(small, VideoRequest(prompt="a fox", width=64, height=64, num_frames=9), RunInputs(seed=1),
                    run_id="r" * 32).request.num_frames == 9
    with pytest.raises(OverBudget, match="lower num_frames to 9"):
        plan_run(small, VideoRequest(prompt="a fox", width=64, height=64, num_frames=13), RunInputs(seed=1),
                 run_id="r" * 32)


def test_a_start_image_sets_the_size_from_its_aspect_and_the_record_shows_it_without_its_bytes(tmp_path):
    model = ServedModel(None, load_workflow("hunyuan15_720p_i2v"), tmp_path / "outputs")  # type: ignore[arg-type]
    uri = png_data_uri(3, size=(90, 160))
    plan = plan_run(model, VideoRequest(prompt="a tower", image=uri), RunInputs(seed=5, image=Image.new("RGB", (90, 160))),
                    run_id="s" * 32)
    concrete = plan.request
    assert (concrete.width, concrete.height) == (720, 1280)  # 9:16 at about the workflow's 1280x720 area
    assert plan.start_image.size == (720, 1280) and plan.start_image_size == (90, 160)
    assert START_IMAGE_NAME in [node["inputs"].get("image") for node in plan.graph.values()]
    assert concrete.image == uri  # still the request as given: a valid object
    shown = concrete.shown()["image"]
    assert shown.startswith("data:image/png;base64,... (") and shown.endswith(" characters)") and len(shown) < 80
