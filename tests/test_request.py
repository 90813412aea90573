import pytest
from pydantic import ValidationError

from comfy_runtime.job.params import FRAMES, SIZE
from comfy_runtime.job.request import VideoRequest


def test_defaults_are_the_reference_settings():
    request = VideoRequest(prompt="a cat")
    assert (request.width, request.height, request.num_frames) == (848, 480, 73)
    assert (request.guidance, request.flow_shift, request.fps) == (6.0, 7.0, 24)


@pytest.mark.parametrize("field,value,hint", [("width", 850, "848"), ("height", 479, "464"), ("width", 2000, "1280")])
def test_off_grid_sizes_are_rejected_with_an_allowed_value(field, value, hint):
    with pytest.raises(ValidationError) as error:
        VideoRequest(prompt="x", **{field: value})
    message = str(error.value)
    assert f"{field}={value}" in message and "multiple of 16" in message and hint in message


@pytest.mark.parametrize("frames,nearest", [(72, 73), (2, 1), (200, 129)])
def test_frame_counts_must_be_4k_plus_1(frames, nearest):
    with pytest.raises(ValidationError) as error:
        VideoRequest(prompt="x", num_frames=frames)
    assert "4k+1" in str(error.value) and f"for example {nearest}" in str(error.value)


def test_grids_cover_the_bounds():
    assert SIZE.choices[0] == 64 and SIZE.choices[-1] == 1280 and all(s % 16 == 0 for s in SIZE.choices)
    assert FRAMES.choices[0] == 1 and FRAMES.choices[-1] == 129 and all((f - 1) % 4 == 0 for f in FRAMES.choices)


@pytest.mark.parametrize("field,value", [("steps", 0), ("guidance", 25.0), ("fps", 0), ("seed", -1), ("prompt", "")])
def test_out_of_range_values_are_rejected(field, value):
    inputs = {"prompt": "x", field: value}
    with pytest.raises(ValidationError) as error:
        VideoRequest(**inputs)
    assert field in str(error.value)


def test_missing_seed_becomes_a_concrete_random_one():
    seeds = {VideoRequest(prompt="x").with_seed().seed for _ in range(5)}
    assert None not in seeds and len(seeds) > 1
    assert VideoRequest(prompt="x", seed=7).with_seed().seed == 7
