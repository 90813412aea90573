"""A real ComfyUI server (the pinned one, its own main.py) in a subprocess on 127.0.0.1.

This is how cog-comfyui and worker-comfyui run ComfyUI: `main.py --listen --port`, then HTTP. The
tests use it for the remote backend; bench/embedded_vs_remote.py for the subprocess-and-poll baseline.
It is stopped by its process group, which it leads (start_new_session).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from local_servers.processes import free_port, stop_process_group


class ComfyUIServer:
    def __init__(
        self, comfyui_path: Path, models_dir: Path, work_dir: Path, custom_node_dirs: list[Path] = (), stock_flags: bool = False
    ):
        self.comfyui_path = Path(comfyui_path).resolve()
        self.models_dir = Path(models_dir).resolve()
        self.work_dir = Path(work_dir).resolve()
        self.custom_node_dirs = [Path(p).resolve() for p in custom_node_dirs]
        self.stock_flags = stock_flags  # True: ComfyUI's defaults (API nodes, previews on), as the wrappers run it
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.work_dir / "comfyui-server.log"
        self.process: subprocess.Popen | None = None

    def command(self) -> list[str]:
        base = self.work_dir / "base"
        for name in ("custom_nodes", "user", "input", "output", "temp"):
            (base / name).mkdir(parents=True, exist_ok=True)
        # --base-directory puts models/ under it: point that at the session's models folder, so the
        # server lists the same files (legacy aliases such as unet/ included) as the embedded runtime.
        models_link = base / "models"
        if not models_link.exists():
            models_link.symlink_to(self.models_dir, target_is_directory=True)
        frontend = self.work_dir / "no-frontend"  # headless: an empty web root instead of the frontend package
        frontend.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable, str(self.comfyui_path / "main.py"),
            "--cpu", "--listen", "127.0.0.1", "--port", str(self.port),
            "--base-directory", str(base), "--front-end-root", str(frontend),
        ]
        if not self.stock_flags:
            # What the embedded runtime does too: the same node set, no latent previews.
            command += ["--disable-api-nodes", "--preview-method", "none"]
        if self.custom_node_dirs:
            # ComfyUI scans every folder listed under custom_nodes in an extra-model-paths file.
            config = self.work_dir / "extra_model_paths.yaml"
            lines = ["hv_tests:", "  custom_nodes: |"] + [f"    {folder}" for folder in self.custom_node_dirs]
            config.write_text("\n".join(lines) + "\n")
            command += ["--extra-model-paths-config", str(config)]
        return command

    def start(self) -> ComfyUIServer:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            self.command(), cwd=self.work_dir, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        return self

    def __enter__(self) -> ComfyUIServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        stop_process_group(self.process)
        if hasattr(self, "_log"):
            self._log.close()

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")[-8000:] if self.log_path.exists() else ""
