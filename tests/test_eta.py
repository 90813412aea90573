"""The ETA on each step event: the measured step time so far, plus decode/encode/upload learned from the last run."""

from comfy_runtime.backends.contract import NodeStarted, Note, StepProgress
from comfy_runtime.render.eta import AfterSampling, RunEta
from comfy_runtime.render.progress import ProgressLog

SIZE = (1280, 720, 129)  # 118.9 megapixel-frames


def test_sampling_eta_is_the_steps_left_at_the_measured_rate_without_the_loading_step():
    eta = RunEta(AfterSampling(), *SIZE)
    assert eta.annotate(NodeStarted("13", "SamplerCustomAdvanced", at=0.0)).class_type == "SamplerCustomAdvanced"
    first = eta.annotate(StepProgress("13", "SamplerCustomAdvanced", 1, 50, at=60.0))  # loads the model, then a step
    assert first.eta_seconds == 49 * 60.0
    second = eta.annotate(StepProgress("13", "SamplerCustomAdvanced", 2, 50, at=98.0))
    third = eta.annotate(StepProgress("13", "SamplerCustomAdvanced", 3, 50, at=136.0))
    assert (second.eta_seconds, third.eta_seconds) == (48 * 38.0, 47 * 38.0)  # the load left out once a step is in


def test_after_sampling_comes_from_the_last_prediction_scaled_by_its_size():
    after = AfterSampling()
    after.learn({"decode": 60.0, "encode": 6.0, "upload": 3.0, "sample": 999.0}, 848, 480, 73)
    eta = RunEta(after, *SIZE)
    eta.annotate(NodeStarted("13", "SamplerCustomAdvanced", at=0.0))
    scale = (1280 * 720 * 129) / (848 * 480 * 73)
    last = eta.annotate(StepProgress("13", "SamplerCustomAdvanced", 50, 50, at=100.0))
    assert abs(last.eta_seconds - 69.0 * scale) < 0.01
    eta.annotate(NodeStarted("9", "VAEDecodeTiled", at=100.0))
    tile = eta.annotate(StepProgress("9", "VAEDecodeTiled", 1, 4, at=110.0))
    assert abs(tile.eta_seconds - (3 * 10.0 + 9.0 * scale)) < 0.01  # tiles left, then encode and upload


def test_other_events_pass_untouched_and_a_first_run_counts_sampling_alone():
    eta = RunEta(AfterSampling(), *SIZE)
    note = Note("seed: 1")
    assert eta.annotate(note) is note
    eta.annotate(NodeStarted("13", "SamplerCustomAdvanced", at=0.0))
    assert eta.annotate(StepProgress("13", "SamplerCustomAdvanced", 10, 10, at=5.0)).eta_seconds == 0.0
    assert eta.annotate(StepProgress("7", "HVTestSlowSteps", 1, 10, at=6.0)).eta_seconds is None  # not a stage we time


def test_the_progress_line_shows_the_pipeline_eta_when_there_is_one():
    lines, times = [], iter([0.0, 10.0])
    log = ProgressLog(lines.append, now=lambda: next(times))
    log(StepProgress("13", "SamplerCustomAdvanced", 2, 30, eta_seconds=125.0))
    assert lines == ["SamplerCustomAdvanced step 2/30 (5.00 s/step, ETA 2:05)"]


def test_a_much_smaller_last_run_is_not_scaled_up_the_warm_start_measures_loading_not_pixels():
    after = AfterSampling()
    after.learn({"decode": 2.0, "encode": 0.1}, 64, 64, 1)  # the warm start: 0.004 megapixel-frames
    assert after.estimate(("decode", "encode"), *SIZE) == 0.0  # 29,000x larger: not known, rather than hours
    assert after.estimate(("decode",), 128, 128, 1) == 2.0 * 4  # 4x larger: scaled
