"""What the frame tap costs and saves per prediction, at production size.

Same process, same graph (the plumbing workflow at 848x480, 73 frames, noisy frames: the worst case for
an encoder), alternating: (a) the graph the service runs (the tap, zlib level 0, instead of
CreateVideo -> SaveVideo), (b) the tap beside the workflow's own SaveVideo (its h264 is thrown away), (c)
the baseline for the tap's level 0: one PNG per frame at SaveImage's level 4 instead of the tap.
Prints ComfyUI's execution time, medians, and the ratios a/b and a/c.
    .venv/bin/python bench/savevideo_replaced.py [rounds] [WxHxF, default 848x480x73]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path

from harness import machine_line

from comfy_runtime.backends.embedded import EmbeddedRuntime
from comfy_runtime.graph.frame_tap import add_frame_tap
from comfy_runtime.graph.workflow import load_workflow
from comfy_runtime.settings import Settings
from comfy_runtime.supply.comfyui_source import resolve_comfyui_path

VALUES = {"prompt": "bench", "width": 848, "height": 480, "num_frames": 73, "fps": 24, "seed": 1,
          "steps": 1, "guidance": 6.0, "flow_shift": 7.0}


def main(rounds: int = 3, size: str = "848x480x73") -> None:
    width, height, frames = (int(n) for n in size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(models_dir=Path(tmp) / "models", output_dir=Path(tmp) / "outputs", device="cpu")
        runtime = EmbeddedRuntime(comfyui_path=resolve_comfyui_path(settings), models_dir=settings.models_dir,
                                  work_dir=settings.output_dir / ".work", device="cpu")
        runtime.start()
        workflow = load_workflow("plumbing_video")
        sized = {**VALUES, "width": width, "height": height, "num_frames": frames}
        values = {name: value for name, value in sized.items() if name in workflow.bindings}
        times: dict[str, list[float]] = {"a": [], "b": [], "c": []}
        for index in range(-1, rounds):  # round -1 warms each arm's nodes and codecs and is not counted
            for arm in ("a", "b", "c"):
                prefix = f"r{index + 1}_{arm}"
                graph, tap = add_frame_tap(workflow.render(values, filename_prefix=prefix), f"{prefix}_frame",
                                           replace_saver=arm != "b")
                if arm == "c":  # the same frames as one PNG each, at SaveImage's fixed compress_level 4
                    graph[tap.node_id] = {"class_type": "SaveImage", "inputs": {
                        "images": graph[tap.node_id]["inputs"]["images"], "filename_prefix": prefix}}
                seconds = runtime.run(graph, Path(tmp) / "outputs" / prefix).execution_seconds
                if index >= 0:
                    times[arm].append(seconds)
        runtime.close()
    tapped, kept, per_frame = (statistics.median(times[arm]) for arm in ("a", "b", "c"))
    print(machine_line(rounds=rounds))
    print(f"plumbing {size}, ComfyUI execution time, medians")
    print(f"(a) tap (level 0) instead of SaveVideo      {tapped:6.2f} s")
    print(f"(b) tap beside SaveVideo                    {kept:6.2f} s")
    print(f"(c) one PNG per frame (level 4), no video   {per_frame:6.2f} s")
    print(f"saved per prediction by dropping SaveVideo {kept - tapped:6.2f} s   ratio a/b {tapped / kept:.2f}")
    print(f"the tap's level 0 against PNGs at level 4  {per_frame - tapped:6.2f} s   ratio a/c {tapped / per_frame:.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3, sys.argv[2] if len(sys.argv) > 2 else "848x480x73")
