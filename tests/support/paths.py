"""Where the project and the test custom-node pack are."""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# HVTestSlowSteps, HVTestFail, the OOM faults and the model stand-ins: nodes a CPU run needs to show faults.
FIXTURE_CUSTOM_NODES = PROJECT_ROOT / "tests" / "fixture_custom_nodes"
