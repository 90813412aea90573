"""Boot predict.py's Predictor in this process under the caller's HV_* variables (HV_BOOT among them), and report
what was started, as JSON on the last line: `python -m tests.support.lean_boot_probe [render]`.
With `render`, it also renders one plumbing video, then uses a deferred module (its code runs then)."""

from __future__ import annotations

import json
import sys


def main(render: bool) -> None:
    from tests.support.predictor import booted_predictor

    predictor = booted_predictor({})
    from comfy_runtime.backends import boot_plan, embedded

    report = {"served": sorted(predictor.service.model.stages.ready), "extras": sorted(embedded._extras_started),
              "deferred": boot_plan.deferred_now(), "classes": sorted(embedded._comfy().nodes.NODE_CLASS_MAPPINGS)}
    if render:
        predictor.predict(prompt="lean", width=64, height=64, num_frames=5, fps=12, seed=1)
        report["deferred_after_run"] = boot_plan.deferred_now()
        import torchvision.ops

        report["box_area"] = torchvision.ops.box_area.__module__  # a deferred module, used: its code runs now
        report["deferred_after_use"] = boot_plan.deferred_now()
    predictor.service.close()
    print(json.dumps(report))


if __name__ == "__main__":
    main("render" in sys.argv[1:])
