"""Ports and process groups for the servers the tests and the benches start (127.0.0.1 only, ended by whoever started them)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_process_group(process: subprocess.Popen | None, grace: float = 20) -> None:
    """End a server a test started with start_new_session=True: SIGTERM to its group only (the server and the
    workers it spawned), SIGKILL after `grace` seconds."""
    if process is None or process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
