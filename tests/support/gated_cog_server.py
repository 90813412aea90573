"""The real Cog server (coglet) on 127.0.0.1 serving a stand-in predictor whose setup and predict wait for files
the test creates, so a test can hold the server in STARTING, BUSY or SETUP_FAILED as long as it needs."""

from __future__ import annotations

from pathlib import Path

from local_servers.cog_server import CogServer

GATED_PREDICTOR = '''
import time
from pathlib import Path

from cog import BasePredictor

HERE = Path(__file__).parent


class Predictor(BasePredictor):
    def setup(self) -> None:
        while not (HERE / "setup_go").exists():
            if (HERE / "setup_fail").exists():
                raise RuntimeError("setup failed on purpose")
            time.sleep(0.02)

    def predict(self) -> str:
        while not (HERE / "predict_go").exists():
            time.sleep(0.02)
        return "done"
'''


class GatedCogServer(CogServer):
    """The real coglet server on 127.0.0.1 with a predictor whose setup and predict wait for files."""

    def __init__(self, root: Path):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        (root / "predict.py").write_text(GATED_PREDICTOR)
        super().__init__({}, root / "server.log", project_dir=root)

    def __exit__(self, *exc) -> None:
        (self.root / "predict_go").touch()  # let a held prediction finish so the worker exits cleanly
        super().__exit__(*exc)

    def wait_for(self, status: str, timeout: float = 60) -> None:
        self.wait_for_status({status}, timeout)
