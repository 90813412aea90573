"""comfy_runtime/supply/download.py against a real HTTP server on 127.0.0.1 serving real bytes with Range support."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from comfy_runtime.supply import download
from comfy_runtime.supply.download import CHUNK, DownloadError, fetch, partial_path
from local_servers.range_server import RangeServer
from tests.support.paths import PROJECT_ROOT

SIZE = 6 * (1 << 20) + 12345  # not a multiple of any chunk or range size


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> tuple[Path, bytes, str]:
    root = tmp_path_factory.mktemp("served")
    data = os.urandom(SIZE)
    (root / "model.safetensors").write_bytes(data)
    return root, data, hashlib.sha256(data).hexdigest()


def test_parallel_fetch_gives_the_same_bytes(served, tmp_path):
    root, data, digest = served
    dest = tmp_path / "vae" / "model.safetensors"
    with RangeServer(root) as server:
        got = fetch(f"{server.url}/model.safetensors", dest, size=SIZE, sha256=digest, connections=4, progress=False,
                    use_pget=False)
        ranges = [r for method, _path, r in server.requests if method == "GET" and r and r != "bytes=0-0"]
    assert dest.read_bytes() == data
    assert got.sha256 == digest and got.size == SIZE and got.bytes_transferred == SIZE
    assert len(ranges) >= 4, ranges  # really split into ranges, not one stream
    assert not partial_path(dest).exists() and not Path(str(partial_path(dest)) + ".json").exists()


def test_unpinned_fetch_reports_the_hash_it_saw(served, tmp_path):
    root, data, digest = served
    with RangeServer(root) as server:
        got = fetch(f"{server.url}/model.safetensors", tmp_path / "m", connections=3, progress=False, use_pget=False)
    assert got.sha256 == digest and (tmp_path / "m").read_bytes() == data


def recorded_bytes(state: Path) -> int:
    """What the fetch's state file says it has written (0 while there is none or it is being replaced)."""
    try:
        return sum(r["done"] for r in json.loads(state.read_text())["ranges"])
    except (OSError, ValueError, KeyError):
        return 0


def test_a_download_killed_half_way_resumes(served, tmp_path):
    root, data, digest = served
    dest = tmp_path / "model.safetensors"
    state = Path(str(partial_path(dest)) + ".json")
    connections = 4
    # Each range response sends one read chunk of the fetch, then holds until released: the child records
    # `connections` whole chunks (well past a third of the file, short of all of it) and can go no further,
    # so it is killed half-way whatever the machine's speed and however the connections shared the bytes.
    with RangeServer(root, hold_each_after=CHUNK) as server:
        url = f"{server.url}/model.safetensors"
        code = (
            "import sys; from pathlib import Path; from comfy_runtime.supply.download import fetch; "
            f"fetch({url!r}, Path({str(dest)!r}), size={SIZE}, sha256={digest!r}, connections={connections}, "
            "progress=False, use_pget=False)"
        )
        child = subprocess.Popen([sys.executable, "-c", code], cwd=PROJECT_ROOT, start_new_session=True)
        try:
            # Bounded only so that a broken fetch cannot hang the suite; the outcome does not depend on it.
            deadline = time.monotonic() + 300
            while (done := recorded_bytes(state)) < connections * CHUNK:
                assert time.monotonic() < deadline, f"the child recorded only {done} bytes; server sent {server.bytes_sent}"
                assert child.poll() is None, "the download ended while the server held its bytes"
                time.sleep(0.05)
            assert child.poll() is None, "the download finished before it could be interrupted"
        finally:
            os.killpg(child.pid, signal.SIGKILL)  # a killed pod: no clean-up runs
            child.wait(timeout=10)
        assert SIZE // 3 <= done < SIZE and not dest.exists()
        saved = recorded_bytes(state)
        assert saved == done  # the kill lost nothing the state file had recorded
        server.hold_each_after = None
        server.release.set()
        got = fetch(url, dest, size=SIZE, sha256=digest, connections=connections, progress=False, use_pget=False)
    assert dest.read_bytes() == data
    assert got.bytes_transferred == SIZE - saved, "the second run must fetch only what the first did not record"


def test_a_checksum_mismatch_leaves_nothing_under_the_final_name(served, tmp_path):
    root, _data, digest = served
    dest = tmp_path / "model.safetensors"
    wrong = "0" * 64
    with RangeServer(root) as server, pytest.raises(DownloadError) as error:
        fetch(f"{server.url}/model.safetensors", dest, size=SIZE, sha256=wrong, progress=False, use_pget=False,
              fix="Run `python -m comfy_runtime weights fetch`.")
    message = str(error.value)
    assert "checksum mismatch" in message and wrong in message and digest in message  # both hashes
    assert "model.safetensors" in message and "weights fetch" in message
    assert not dest.exists() and not partial_path(dest).exists()
    assert list(tmp_path.iterdir()) == []  # no .lock either: a failed fetch leaves nothing behind


def test_404_names_the_file_and_what_to_check(served, tmp_path):
    root, _data, _digest = served
    with RangeServer(root) as server, pytest.raises(DownloadError) as error:
        fetch(f"{server.url}/gone.safetensors", tmp_path / "gone.safetensors", progress=False, use_pget=False)
    assert "gone.safetensors" in str(error.value) and "404" in str(error.value) and "manifest" in str(error.value)
    assert not (tmp_path / "gone.safetensors").exists()


def test_a_size_mismatch_is_refused_before_downloading(served, tmp_path):
    root, _data, digest = served
    with RangeServer(root) as server:
        with pytest.raises(DownloadError) as error:
            fetch(f"{server.url}/model.safetensors", tmp_path / "m", size=SIZE + 1, sha256=digest, progress=False,
                  use_pget=False)
        sent = server.bytes_sent
    message = str(error.value)
    assert str(SIZE) in message and str(SIZE + 1) in message and "weights lock" in message
    assert sent <= 1  # only the one-byte probe
    assert not (tmp_path / "m").exists()


def test_no_space_is_refused_before_downloading(served, tmp_path):
    root, _data, digest = served
    with RangeServer(root) as server:
        with pytest.raises(DownloadError) as error:
            fetch(f"{server.url}/model.safetensors", tmp_path / "m", size=1 << 60, sha256=digest, progress=False,
                  use_pget=False)
        sent = server.bytes_sent
    assert "not enough disk space" in str(error.value) and "HV_MODELS_DIR" in str(error.value)
    assert sent == 0


def test_credentials_go_to_the_source_and_not_to_the_host_it_redirects_to(served, tmp_path):
    root, data, digest = served
    with RangeServer(root) as cdn, RangeServer(root) as origin:
        cdn_url = cdn.url.replace("127.0.0.1", "localhost") + "/model.safetensors"  # another origin
        origin.redirects["/org/repo/resolve/main/m.st"] = cdn_url
        got = fetch(f"{origin.url}/org/repo/resolve/main/m.st", tmp_path / "m.st", size=SIZE, sha256=digest,
                    connections=3, progress=False, use_pget=False, headers={"Authorization": "Bearer hf_secret"})
        assert got.sha256 == digest and (tmp_path / "m.st").read_bytes() == data
        assert origin.authorizations and all(auth == "Bearer hf_secret" for _path, auth in origin.authorizations)
        assert len(cdn.authorizations) >= 3 and all(auth is None for _path, auth in cdn.authorizations)


def test_progress_in_a_log_is_plain_lines_without_carriage_returns(served, tmp_path, monkeypatch, capsys):
    # capsys's stderr is not a terminal, like Cog's setup log or a Kubernetes pod log
    root, _data, digest = served
    monkeypatch.setattr(download, "PLAIN_PROGRESS_SECONDS", 0.0)  # a line per chunk, so the test need not wait
    with RangeServer(root) as server:
        fetch(f"{server.url}/model.safetensors", tmp_path / "m.st", size=SIZE, sha256=digest, connections=2,
              use_pget=False)
    err = capsys.readouterr().err
    assert "\r" not in err and "\x1b" not in err
    lines = err.splitlines()
    assert len(lines) >= 3, err
    assert all(re.fullmatch(r"m\.st: (downloading|done) \d+\.\d\d GiB of 0\.01 GiB \(\d+%\), \d+\.\d MiB/s", line)
               for line in lines), lines
    assert lines[-1].startswith("m.st: done 0.01 GiB of 0.01 GiB (100%)")


def test_progress_on_a_terminal_is_a_bar(served, tmp_path, monkeypatch):
    root, _data, digest = served
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # a new pty is 0 columns wide
    terminal = os.fdopen(follower, "w")
    monkeypatch.setattr(sys, "stderr", terminal)
    try:
        with RangeServer(root) as server:
            fetch(f"{server.url}/model.safetensors", tmp_path / "m.st", size=SIZE, sha256=digest, connections=2,
                  use_pget=False)
        terminal.flush()
        shown = b""
        while select.select([leader], [], [], 0.5)[0]:
            shown += os.read(leader, 65536)
    finally:
        terminal.close()
        os.close(leader)
    text = shown.decode(errors="replace")
    assert "\r" in text and "m.st:" in text and "100%" in text and "downloading" not in text  # tqdm's bar


def test_two_processes_fetching_one_file_take_turns_and_leave_no_lock(served, tmp_path):
    """Two pods on one volume: the second waits on the lock, then finds the file whole; the lock file goes."""
    root, data, digest = served
    dest = tmp_path / "vae" / "model.safetensors"
    with RangeServer(root) as server:
        code = ("import sys; from pathlib import Path; from comfy_runtime.supply.download import fetch; "
                f"got = fetch({server.url + '/model.safetensors'!r}, Path({str(dest)!r}), size={SIZE}, "
                f"sha256={digest!r}, progress=False, use_pget=False); print(got.bytes_transferred)")
        both = [subprocess.Popen([sys.executable, "-c", code], cwd=PROJECT_ROOT, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True) for _ in range(2)]
        results = [p.communicate(timeout=120) for p in both]
    assert all(p.returncode == 0 for p in both), results
    assert sorted(int(out) for out, _ in results) == [0, SIZE], results  # one downloaded, the other found it whole
    assert dest.read_bytes() == data
    assert sorted(p.name for p in dest.parent.iterdir()) == ["model.safetensors"]  # no .lock, no .partial
