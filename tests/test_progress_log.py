"""The progress lines a caller reads: step i/N with s/step and an ETA, no internal node ids."""

from comfy_runtime.backends.contract import NodeStarted, StepProgress
from comfy_runtime.render.progress import ProgressLog, clock, summary_line


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_steps_carry_the_mean_step_time_and_the_eta_of_the_node():
    lines, now = [], Clock()
    log = ProgressLog(lines.append, now=now)
    log(NodeStarted("13", "SamplerCustomAdvanced"))
    now.t += 6.0  # the first step includes loading the model
    log(StepProgress("13", "SamplerCustomAdvanced", 1, 30))
    now.t += 4.0
    log(StepProgress("13", "SamplerCustomAdvanced", 2, 30))
    now.t += 200.0
    log(NodeStarted("9", "VAEDecodeTiled"))
    now.t += 1.5
    log(StepProgress("9", "VAEDecodeTiled", 1, 4))
    assert lines == [
        "node 13 SamplerCustomAdvanced",
        "SamplerCustomAdvanced step 1/30 (6.00 s/step, ETA 2:54)",
        "SamplerCustomAdvanced step 2/30 (5.00 s/step, ETA 2:20)",
        "node 9 VAEDecodeTiled",
        "VAEDecodeTiled step 1/4 (1.50 s/step, ETA 0:04)",
    ]


def test_the_frame_tap_is_named_for_what_it_does_not_by_its_generated_id():
    lines = []
    ProgressLog(lines.append, now=Clock())(NodeStarted("hv_frames_hunyuan_t2v_0123456789ab_frame", "SaveAnimatedPNG"))
    assert lines == ["saving the decoded frames for the encoder"]


def test_clock_and_summary():
    assert [clock(0), clock(59.6), clock(61), clock(3725)] == ["0:00", "1:00", "1:01", "1:02:05"]
    timings = {"total_seconds": 12.34, "comfyui_seconds": 10.0, "encode_seconds": 0.52}
    assert summary_line(timings, 848, 480, 73, 7, "x.mp4") == (
        "done: 848x480, 73 frames, seed 7 in 12.3 s (ComfyUI 10.0 s, encode 0.5 s) -> x.mp4")
