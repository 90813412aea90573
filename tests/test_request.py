import pytest
from pydantic import ValidationError

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


def accepted(**fields) -> bool:
    try:
        VideoRequest(prompt="x", **fields)
    except ValidationError:
        return False
    return True


def test_exactly_the_documented_grid_of_sizes_and_frame_counts_is_accepted():
    """The rule as the docs state it (multiples of 16 from 64 to 1280; 4k+1 frames from 1 to 129), checked
    against every value around it, not against the constants the rule is written with."""
    assert {v for v in range(-32, 1400) if accepted(width=v)} == set(range(64, 1281, 16))
    assert {v for v in range(-32, 1400) if accepted(height=v)} == set(range(64, 1281, 16))
    assert {v for v in range(-8, 200) if accepted(num_frames=v)} == set(range(1, 130, 4))


@pytest.mark.parametrize(
    "field,lowest,highest,below,above",
    [("steps", 1, 100, 0, 101), ("guidance", 1.0, 20.0, 0.99, 20.01), ("flow_shift", 1.0, 20.0, 0.99, 20.01),
     ("fps", 1, 60, 0, 61), ("seed", 0, 2**32 - 1, -1, 2**32), ("crf", 1, 51, 0, 52)],
)
def test_each_bound_is_accepted_and_one_past_it_is_refused_naming_the_field_and_the_bound(
    field, lowest, highest, below, above
):
    assert accepted(**{field: lowest}) and accepted(**{field: highest})
    for value, bound in ((below, lowest), (above, highest)):
        with pytest.raises(ValidationError) as error:
            VideoRequest(prompt="x", **{field: value})
        (problem,) = error.value.errors()
        assert problem["loc"] == (field,), problem
        assert (f"{bound:g}" if isinstance(bound, float) else str(bound)) in problem["msg"], problem


def test_an_empty_prompt_is_refused_as_the_prompt_field():
    with pytest.raises(ValidationError) as error:
        VideoRequest(prompt="")
    assert [problem["loc"] for problem in error.value.errors()] == [("prompt",)]


def test_missing_seed_becomes_a_concrete_random_one():
    seeds = {VideoRequest(prompt="x").with_seed().seed for _ in range(5)}
    assert None not in seeds and len(seeds) > 1
    assert VideoRequest(prompt="x", seed=7).with_seed().seed == 7


@pytest.mark.parametrize(("values", "line"), [
    ({"prompt": "a", "steps": 0}, "steps=0 is out of range: use 1-100"),
    ({"prompt": "a", "colour": 1}, "colour is not an input: use prompt, negative_prompt, image"),
    ({"prompt": "a", "steps": "many"}, "steps must be a whole number (1-100)"),
    ({"prompt": "fox\x00 in snow"}, "prompt contains the control character U+0000 at character 3"),
    ({}, "prompt is required"),
])
def test_every_refusal_is_one_line_naming_the_input_and_the_rule_never_pydantics_dump(values, line):
    from comfy_runtime.job.request import RequestRejected, parse_request

    with pytest.raises(RequestRejected) as refused:
        parse_request(values)
    message = str(refused.value)
    assert message.startswith(line), message
    assert "\n" not in message and "pydantic" not in message and "input_value" not in message
    assert "fox\x00" not in message  # the rejected text is never echoed


def test_what_the_caller_set_stays_its_own_fact_through_copies():
    request = VideoRequest(prompt="a", steps=5)
    filled = request.model_copy(update={"fps": 12, "width": 64})
    assert request.given == filled.given == {"prompt", "steps"}
