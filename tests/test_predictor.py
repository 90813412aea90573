"""predict.py's Predictor, in-process, on the weight-free plumbing workflow."""

import pytest

from predict import Predictor
from tests.support.media import decode_frames, probe_video


@pytest.fixture(scope="module")
def predictor(hv_env, runtime):
    predictor = Predictor()
    predictor.setup()
    return predictor


def predict(predictor, **overrides):
    inputs = dict(prompt="plumbing", width=96, height=64, num_frames=13, steps=2, guidance=6.0, flow_shift=7.0,
                  fps=12, seed=5, output_format="mp4", crf=18)
    inputs.update(overrides)
    return predictor.predict(**inputs)


@pytest.mark.parametrize("output_format,codec", [("mp4", "h264"), ("webm", "vp9"), ("gif", "gif")])
def test_every_format_decodes_with_the_requested_frames_size_and_fps(predictor, output_format, codec):
    path = predict(predictor, output_format=output_format)
    assert path.suffix == f".{output_format}"
    video = probe_video(path)
    assert (video.frames, video.width, video.height, video.codec) == (13, 96, 64, codec)
    # GIF stores frame delays in 1/100 s, so 12 fps is written as 8/100 s per frame (12.5 fps).
    expected_fps = 100 / round(100 / 12) if output_format == "gif" else 12
    assert video.fps == pytest.approx(expected_fps, abs=0.01)


def test_seed_is_logged_and_changes_the_pixels(predictor, capsys):
    first = decode_frames(predict(predictor, seed=11))
    again = decode_frames(predict(predictor, seed=11))
    other = decode_frames(predict(predictor, seed=12))
    assert all((a == b).all() for a, b in zip(first, again, strict=True))
    assert any((a != b).any() for a, b in zip(first, other, strict=True))
    assert "seed: 11" in capsys.readouterr().out


def logged_seeds(capsys) -> list[int]:
    return [int(line.split()[1]) for line in capsys.readouterr().out.splitlines() if line.startswith("seed: ")]


def test_an_empty_seed_is_drawn_fresh_logged_and_is_the_seed_the_video_was_made_with(predictor, capsys):
    drawn = decode_frames(predict(predictor, seed=None))
    (seed,) = logged_seeds(capsys)
    assert 0 <= seed <= 2**32 - 1
    # The logged seed reproduces the video bit for bit: it is the one the render used, not a second draw.
    again = decode_frames(predict(predictor, seed=seed))
    assert logged_seeds(capsys) == [seed]
    assert all((a == b).all() for a, b in zip(drawn, again, strict=True))
    predict(predictor, seed=None)
    assert logged_seeds(capsys) != [seed], "each empty seed is a new draw"


def test_each_prediction_writes_its_own_folder(predictor):
    first = predict(predictor)
    assert first.is_file()
    second = predict(predictor)
    # Retention: the previous prediction's folder goes when the next starts (Cog has taken its file by then).
    assert first.parent != second.parent and second.is_file() and not first.parent.exists()


def test_bad_input_outside_http_is_rejected_with_the_rule(predictor):
    with pytest.raises(ValueError, match="multiple of 16"):
        predict(predictor, width=850)
