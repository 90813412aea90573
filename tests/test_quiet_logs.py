"""What `make demo` shows: the real CLI render on the plumbing workflow, booting the real ComfyUI on the CPU."""

import os
import subprocess
import sys

import pytest

from tests.support.media import probe_video
from tests.support.paths import PROJECT_ROOT

NOISE = ("Traceback", "IMPORT FAILED", "pip install", "Total VRAM", "hv_frames_", "INFO root", "torchaudio missing")


# The lean boot (HV_BOOT's default) starts no audio node module, so torchaudio's absence never comes up; a full boot
# starts them all, and its torchaudio failures become one harmless line.
@pytest.mark.parametrize("boot,torchaudio_lines", [("lean", 0), ("full", 1)])
def test_a_cpu_render_prints_a_short_honest_log(tmp_path, boot, torchaudio_lines):
    env = {**os.environ, "HV_WORKFLOW": "plumbing_video", "HV_OUTPUT_DIR": str(tmp_path / "outputs"), "HV_DEVICE": "cpu",
           "HV_BOOT": boot}
    out = tmp_path / "demo.mp4"
    done = subprocess.run(
        [sys.executable, "-m", "comfy_runtime", "render", "--prompt", "x", "--width", "64", "--height", "64",
         "--num-frames", "5", "--fps", "8", "--seed", "3", "--out", str(out)],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(out)  # stdout is the result alone; the log is on stderr
    log = done.stderr.splitlines()
    print(f"{len(log)} log lines:", *log, sep="\n")
    assert not [line for line in log if any(noise in line for noise in NOISE)], log
    assert [line for line in log if "torchaudio" in line and not ("is not installed" in line and "Harmless for video" in line)] == []
    assert sum("torchaudio" in line for line in log) == torchaudio_lines, log
    assert sum(line.startswith("host memory: ") and "pinned memory: not used (CPU device)" in line for line in log) == 1
    assert log[-1].startswith("done: 64x64, 5 frames, seed 3 in ") and log[-1].endswith(".mp4"), log
    assert probe_video(out).frames == 5
