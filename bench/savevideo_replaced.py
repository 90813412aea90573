"""What the frame tap replacing CreateVideo -> SaveVideo saves per prediction, at production size.

Same process, same graph (the plumbing workflow at 848x480, 73 frames, noisy frames: the worst case for
an encoder), alternating: (a) the graph the service runs (tap instead of SaveVideo), (b) the tap beside
the workflow's own SaveVideo (its h264 is thrown away). Prints ComfyUI's execution time, medians.
    .venv/bin/python bench/savevideo_replaced.py [rounds]
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from comfy_runtime.backends.embedded import EmbeddedRuntime
from comfy_runtime.graph.frame_tap import add_frame_tap
from comfy_runtime.graph.workflow import load_workflow
from comfy_runtime.settings import Settings
from comfy_runtime.supply.comfyui_source import resolve_comfyui_path

VALUES = {"prompt": "bench", "width": 848, "height": 480, "num_frames": 73, "fps": 24, "seed": 1,
          "steps": 1, "guidance": 6.0, "flow_shift": 7.0}


def main(rounds: int = 3) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(models_dir=Path(tmp) / "models", output_dir=Path(tmp) / "outputs", device="cpu")
        runtime = EmbeddedRuntime(comfyui_path=resolve_comfyui_path(settings), models_dir=settings.models_dir,
                                  work_dir=settings.output_dir / ".work", device="cpu")
        runtime.start()
        workflow = load_workflow("plumbing_video")
        values = {name: value for name, value in VALUES.items() if name in workflow.bindings}
        times: dict[bool, list[float]] = {True: [], False: []}
        for index in range(rounds):
            for replace in (True, False):
                prefix = f"r{index}_{int(replace)}"
                graph, _ = add_frame_tap(workflow.render(values, filename_prefix=prefix), f"{prefix}_frame", replace)
                times[replace].append(runtime.run(graph, Path(tmp) / "outputs" / prefix).execution_seconds)
        runtime.close()
    replaced, kept = statistics.median(times[True]), statistics.median(times[False])
    print(f"plumbing 848x480x73, {rounds} rounds, {os.cpu_count()} cores, {time.strftime('%Y-%m-%d %H:%M')}")
    print(f"(a) tap instead of SaveVideo   {replaced:6.2f} s")
    print(f"(b) tap beside SaveVideo       {kept:6.2f} s")
    print(f"saved per prediction           {kept - replaced:6.2f} s   ratio a/b {replaced / kept:.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
