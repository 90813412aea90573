"""A real PostgreSQL server for the farm tests and bench: initdb + pg_ctl in a temp dir, on 127.0.0.1:<free port>, stopped by the test.

The binaries come from Debian's `postgresql` package (.ci/run installs it when initdb is missing), found under
/usr/lib/postgresql/*/bin. PostgreSQL refuses to run as root, so under root (as in CI) the cluster is created
and run as the unprivileged `postgres` user the package creates (or `nobody`), in a folder that user owns.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

from local_servers.processes import free_port


def postgres_bin_dir() -> Path:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    if candidates:
        return Path(candidates[0]).parent
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    raise RuntimeError("PostgreSQL is not installed: apt-get install -y postgresql (its initdb is not on this machine)")


def _run_as() -> str | None:
    """The user to run PostgreSQL as when this process is root; None when it is not root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise RuntimeError("running as root and no unprivileged user (postgres, nobody) exists to run PostgreSQL")


class PostgresServer:
    def __init__(self, port: int | None = None):
        self.bin = postgres_bin_dir()
        self.port = port or free_port()
        self.user = _run_as()
        # Not under pytest's tmp dir: that one is 0700 root, and the server runs as another user.
        self.root = Path(tempfile.mkdtemp(prefix="hv-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.url = f"postgresql://hv@127.0.0.1:{self.port}/postgres"

    def _cmd(self, *args: str) -> list[str]:
        command = [str(self.bin / args[0]), *args[1:]]
        return ["runuser", "-u", self.user, "--", *command] if self.user else command

    def __enter__(self) -> PostgresServer:
        if self.user:
            entry = pwd.getpwnam(self.user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        subprocess.run(
            self._cmd("initdb", "-D", str(self.data), "-U", "hv", "--auth=trust", "--no-sync", "-E", "UTF8"),
            check=True, capture_output=True,
        )
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def start(self) -> None:
        # 127.0.0.1 only, no unix socket outside our folder; fsync off: a test database need not survive a power cut.
        options = (f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.root} "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=100")
        subprocess.run(self._cmd("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "60",
                                 "start"), check=True, capture_output=True)
        deadline = time.monotonic() + 30
        while True:
            try:
                psycopg.connect(self.url, connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise AssertionError("PostgreSQL did not accept connections: " + self.logs()) from None
                time.sleep(0.1)

    def stop(self, mode: str = "fast") -> None:
        if (self.data / "postmaster.pid").exists():
            subprocess.run(self._cmd("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop"),
                           capture_output=True)

    def restart(self) -> None:
        """Stop (closing every client connection) and start again on the same port: a database failover in small."""
        self.stop()
        self.start()

    def logs(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""
