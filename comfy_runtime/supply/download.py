"""Fetch one large file over HTTP: parallel ranges, resumable, verified before it gets its name.

The bytes land in `<name>.partial`; a small `<name>.partial.json` records how far each range got, so
an interrupted fetch (killed pod, dropped connection) continues where it stopped. Only after the size
and the sha256 match is the file renamed to its final name, so a file under the final name is always
whole. When `pget` (Replicate's parallel fetcher) is on PATH it does the transfer instead; the checks
and the rename stay ours.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TextIO

import httpx
from tqdm import tqdm

from comfy_runtime.errors import HunyuanVideoError
from comfy_runtime.supply.commands import WEIGHTS_LOCK_COMMAND
from comfy_runtime.supply.digest import sha256_of

CHUNK = 1 << 20
# Headroom over the file itself: a disk filled to the last byte breaks everything else on it.
SPACE_MARGIN = 256 << 20
STATE_FLUSH_SECONDS = 0.2
ATTEMPTS_PER_RANGE = 4
# Where no terminal shows a bar: one progress line this often (a 25 GB file at 100 MB/s gives ~14 lines).
PLAIN_PROGRESS_SECONDS = 30.0


class DownloadError(HunyuanVideoError, RuntimeError):
    pass


@dataclass(frozen=True)
class Fetched:
    path: Path
    size: int
    sha256: str
    bytes_transferred: int  # what came over the network in this call (less than size after a resume)


@dataclass
class _Range:
    start: int
    end: int  # exclusive
    done: int = 0

    @property
    def remaining(self) -> int:
        return self.end - self.start - self.done


def partial_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".partial")


def _state_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".partial.json")


# httpx's timeout is per read: a source sending a little now and then never trips it. Over each window the whole
# transfer (all ranges together) must average this much, or it stops (it resumes on the next fetch).
MIN_BYTES_PER_SECOND = 64 * 1024
FLOOR_WINDOW_SECONDS = 60.0


class _Meter:
    """Bytes received so far, counted by every range's thread."""

    def __init__(self) -> None:
        self.received = 0
        self.lock = threading.Lock()

    def add(self, n: int) -> None:
        with self.lock:
            self.received += n


@dataclass(frozen=True)
class Transfer:
    """One file to fetch and the rules it must meet; every step below takes this instead of ten parameters."""

    url: str
    dest: Path
    size: int = 0  # 0: unknown (unpinned), taken from the server
    sha256: str = ""
    connections: int = 8
    fix: str = ""  # the command that repairs things, appended to every error
    progress: bool = True
    timeout: float = 60.0
    headers: dict[str, str] = field(default_factory=dict)  # e.g. a Hugging Face token, for url's origin only
    min_bytes_per_second: float = MIN_BYTES_PER_SECOND
    floor_window: float = FLOOR_WINDOW_SECONDS
    meter: _Meter = field(default_factory=_Meter, compare=False)

    @property
    def partial(self) -> Path:
        return partial_path(self.dest)

    @property
    def state_file(self) -> Path:
        return _state_path(self.dest)

    @property
    def hint(self) -> str:
        return f" {self.fix}" if self.fix else ""

    def error(self, what: str) -> DownloadError:
        return DownloadError(f"{self.dest.name}: {what}{self.hint}")


@dataclass(frozen=True)
class _Probe:
    total: int
    ranged: bool
    final_url: str  # after redirects: where the bytes really come from


def fetch(
    url: str,
    dest: Path,
    *,
    size: int = 0,
    sha256: str = "",
    connections: int = 8,
    fix: str = "",
    progress: bool = True,
    use_pget: bool = True,
    timeout: float = 60.0,
    headers: dict[str, str] | None = None,
    min_bytes_per_second: float = MIN_BYTES_PER_SECOND,
    floor_window: float = FLOOR_WINDOW_SECONDS,
) -> Fetched:
    """Download url to dest. size/sha256 (when known) must match or nothing is left under dest.

    fix: the command that repairs things (named in every error). headers: e.g. a Hugging Face token (httpx drops
    Authorization when a redirect leaves the host, so the CDN never sees it).
    """
    transfer = Transfer(url, Path(dest), size, sha256.lower(), connections, fix, progress, timeout, dict(headers or {}),
                        min_bytes_per_second, floor_window)
    transfer.dest.parent.mkdir(parents=True, exist_ok=True)
    # Pods sharing one volume (a ReadWriteMany PVC in lazy mode) must not write one .partial together:
    # the second waits, then finds the file already there and verified.
    with _exclusive(transfer.dest):
        whole = _already_whole(transfer)
        if whole is not None:
            return whole
        if transfer.size:
            _check_space(transfer, transfer.size)
        pget = shutil.which("pget") if use_pget and not transfer.headers else None  # pget takes no headers
        transferred = _fetch_with_pget(pget, transfer) if pget else _fetch_with_httpx(transfer)
        return _verify_and_rename(transfer, transferred)


@contextlib.contextmanager
def _exclusive(dest: Path):
    """Hold `<dest>.lock` for the download, and remove it after, success or not: nothing is left in models/.
    The holder unlinks it while still holding it, so a process that was waiting on that file finds it gone
    and locks the new one instead of sharing a lock nobody else can see."""
    lock_path = dest.with_name(dest.name + ".lock")
    while True:
        handle = lock_path.open("a")
        fcntl.lockf(handle, fcntl.LOCK_EX)  # lockf, not flock: NFS-backed volumes honour it
        if _is_current(handle, lock_path):
            break
        handle.close()
    try:
        yield
    finally:
        lock_path.unlink(missing_ok=True)
        fcntl.lockf(handle, fcntl.LOCK_UN)
        handle.close()


def _is_current(handle, path: Path) -> bool:
    try:
        on_disk = path.stat()
    except FileNotFoundError:
        return False
    held = os.fstat(handle.fileno())
    return (on_disk.st_dev, on_disk.st_ino) == (held.st_dev, held.st_ino)


def _already_whole(transfer: Transfer) -> Fetched | None:
    dest, size, sha256 = transfer.dest, transfer.size, transfer.sha256
    if size and sha256 and dest.is_file() and dest.stat().st_size == size and sha256_of(dest) == sha256:
        return Fetched(path=dest, size=size, sha256=sha256, bytes_transferred=0)
    return None


def _fetch_with_httpx(transfer: Transfer) -> int:
    limits = httpx.Limits(max_connections=transfer.connections + 1)
    with httpx.Client(follow_redirects=True, timeout=transfer.timeout, limits=limits) as client:
        floor = _ThroughputFloor(client, transfer)
        try:
            return _fetch_with_client(client, transfer)
        except (httpx.HTTPError, RuntimeError, DownloadError):  # RuntimeError: the floor closed the client
            if floor.tripped:
                raise transfer.error(floor.tripped) from None
            raise
        finally:
            floor.stop()


class _ThroughputFloor:
    """Closes the client (breaking every read in progress) when a window passes with too few bytes."""

    def __init__(self, client: httpx.Client, transfer: Transfer):
        self.client, self.transfer, self.tripped = client, transfer, ""
        self._stopped = threading.Event()
        threading.Thread(target=self._watch, daemon=True, name="fetch-floor").start()

    def _watch(self) -> None:
        transfer, before = self.transfer, self.transfer.meter.received
        while not self._stopped.wait(transfer.floor_window):
            got = transfer.meter.received - before
            before += got
            if got < transfer.min_bytes_per_second * transfer.floor_window:
                self.tripped = (f"{got / transfer.floor_window:.0f} bytes/s over the last {transfer.floor_window:g} s, "
                                f"under the floor of {transfer.min_bytes_per_second:g} bytes/s: the source is too slow "
                                "or stalled; run the fetch again (it resumes) or fetch from a faster mirror.")
                self.client.close()
                return

    def stop(self) -> None:
        self._stopped.set()


def _fetch_with_client(client: httpx.Client, transfer: Transfer) -> int:
    probe = _probe(client, transfer)
    # The ranges go straight to where the redirect led (a CDN): credentials stay with the host they are for.
    headers = transfer.headers if url_origin(probe.final_url) == url_origin(transfer.url) else {}
    if transfer.size and probe.total != transfer.size:
        raise transfer.error(
            f"the server reports {probe.total} bytes, the manifest pins {transfer.size}. The source changed or "
            f"the manifest is wrong: check {transfer.url}, then re-pin with `{WEIGHTS_LOCK_COMMAND}`."
        )
    if not transfer.size:
        _check_space(transfer, probe.total)
    if probe.ranged and probe.total > 0:
        return _fetch_ranges(client, transfer, probe, headers)
    return _fetch_single(client, transfer, probe, headers)


def _verify_and_rename(transfer: Transfer, transferred: int) -> Fetched:
    """The size and the sha256 are checked on the .partial; only a file that passes gets the final name."""
    partial, dest = transfer.partial, transfer.dest
    actual_size = partial.stat().st_size
    if transfer.size and actual_size != transfer.size:
        _discard(transfer)
        raise transfer.error(f"got {actual_size} bytes, expected {transfer.size}; the partial file was removed.")
    digest = sha256_of(partial)
    if transfer.sha256 and digest != transfer.sha256:
        _discard(transfer)
        raise transfer.error(
            f"checksum mismatch: expected sha256 {transfer.sha256}, got {digest} ({transfer.url}). The download "
            f"was removed; nothing was written under {dest}. If the source really changed, re-pin with "
            f"`{WEIGHTS_LOCK_COMMAND}`."
        )
    os.replace(partial, dest)
    transfer.state_file.unlink(missing_ok=True)
    return Fetched(path=dest, size=actual_size, sha256=digest, bytes_transferred=transferred)


def url_origin(url: str) -> tuple[str, str, int | None]:
    parsed = httpx.URL(url)
    return parsed.scheme, parsed.host, parsed.port


def _discard(transfer: Transfer) -> None:
    transfer.partial.unlink(missing_ok=True)
    transfer.state_file.unlink(missing_ok=True)


def _check_space(transfer: Transfer, total: int) -> None:
    needed = total - _resumable_bytes(transfer, total)
    folder = transfer.dest.parent
    free = shutil.disk_usage(folder).free
    if needed + SPACE_MARGIN > free:
        raise transfer.error(
            f"not enough disk space in {folder}: needs {_gib(needed)} more (+{_gib(SPACE_MARGIN)} headroom), "
            f"{_gib(free)} free. Free space there or point HV_MODELS_DIR at a larger volume."
        )


def _gib(n: int) -> str:
    return f"{n / (1 << 30):.2f} GiB"


def _probe(client: httpx.Client, transfer: Transfer) -> _Probe:
    """The total size, whether ranges work, and the URL after redirects, from a one-byte range request."""
    url = transfer.url
    try:
        with client.stream("GET", url, headers={**transfer.headers, "Range": "bytes=0-0"}) as response:
            status = response.status_code
            if status == 404:
                raise transfer.error(f"{url} answered 404 Not Found. Check the url/hf_path in the manifest (and "
                                     "hf_revision); the file may have moved.")
            if status in (401, 403):
                raise transfer.error(f"{url} answered {status}: the source needs credentials (for Hugging Face "
                                     "set HF_TOKEN) or the link expired.")
            if status == 206:
                content_range = response.headers.get("content-range", "")
                total = content_range.rpartition("/")[2]
                if not total.isdigit():
                    raise transfer.error(f"{url} sent no usable Content-Range ({content_range!r}).")
                return _Probe(int(total), True, str(response.url))
            if status == 200:
                length = response.headers.get("content-length", "")
                return _Probe(int(length) if length.isdigit() else 0, False, str(response.url))
            raise transfer.error(f"{url} answered HTTP {status}.")
    except httpx.HTTPError as error:
        raise transfer.error(f"cannot reach {url}: {error}.") from error


def _resumable_bytes(transfer: Transfer, total: int) -> int:
    ranges = _load_state(transfer, total)
    return sum(r.done for r in ranges) if ranges else 0


def _load_state(transfer: Transfer, total: int) -> list[_Range] | None:
    partial, state_file = transfer.partial, transfer.state_file
    if not (partial.is_file() and state_file.is_file()):
        return None
    try:
        data = json.loads(state_file.read_text())
        ranges = [_Range(**r) for r in data["ranges"]]
    except (ValueError, KeyError, TypeError):
        return None
    if data.get("total") != total or partial.stat().st_size != total:
        return None  # another file (or a new pin): start over
    return ranges


def _plan(total: int, connections: int) -> list[_Range]:
    # More ranges than connections so a slow range does not hold the whole file back.
    pieces = max(1, min(connections * 4, total // CHUNK or 1))
    step = -(-total // pieces)
    return [_Range(start, min(start + step, total)) for start in range(0, total, step)]


def _save_state(state_file: Path, total: int, ranges: list[_Range]) -> None:
    tmp = state_file.with_name(state_file.name + ".tmp")
    tmp.write_text(json.dumps({"total": total, "ranges": [asdict(r) for r in ranges]}))
    os.replace(tmp, state_file)


class _RangedDownload:
    """The parallel part: each range streams into its own offset of the sparse .partial; a flusher thread saves
    how far each range got, so a killed process resumes from there."""

    def __init__(self, client: httpx.Client, transfer: Transfer, probe: _Probe, headers: dict[str, str]):
        self.client, self.transfer, self.headers = client, transfer, headers
        self.url, self.total = probe.final_url, probe.total
        ranges = _load_state(transfer, self.total)
        if ranges is None:
            with transfer.partial.open("wb") as handle:
                handle.truncate(self.total)  # sparse: each range writes at its own offset
            ranges = _plan(self.total, transfer.connections)
        self.ranges = ranges
        self.transferred = 0
        self.lock = threading.Lock()
        self.stop = threading.Event()

    def run(self) -> int:
        _save_state(self.transfer.state_file, self.total, self.ranges)
        already = sum(r.done for r in self.ranges)
        self.progress = Progress(self.transfer.dest.name, self.total, already, enabled=self.transfer.progress)
        self.fd = os.open(self.transfer.partial, os.O_WRONLY)
        flushing = threading.Thread(target=self._flush_periodically, daemon=True)
        flushing.start()
        try:
            with ThreadPoolExecutor(max_workers=self.transfer.connections, thread_name_prefix="fetch") as pool:
                futures = [pool.submit(self._one_range, piece) for piece in self.ranges if piece.remaining > 0]
                try:
                    for future in futures:
                        future.result()
                except BaseException:
                    self.stop.set()  # one range failed for good (or Ctrl-C): the others stop, the state keeps their bytes
                    raise
        finally:
            self.stop.set()
            flushing.join()
            os.close(self.fd)
            with self.lock:
                _save_state(self.transfer.state_file, self.total, self.ranges)
            self.progress.close()
        return self.transferred

    def _flush_periodically(self) -> None:
        while not self.stop.wait(STATE_FLUSH_SECONDS):
            with self.lock:
                _save_state(self.transfer.state_file, self.total, self.ranges)

    def _one_range(self, piece: _Range) -> None:
        last_error: Exception | None = None
        for _attempt in range(ATTEMPTS_PER_RANGE):
            if piece.remaining <= 0 or self.stop.is_set():
                return
            try:
                self._stream_range(piece)
            except httpx.HTTPError as error:
                last_error = error
        if piece.remaining > 0 and not self.stop.is_set():
            raise self.transfer.error(f"bytes {piece.start}-{piece.end - 1} failed after {ATTEMPTS_PER_RANGE} "
                                      f"attempts ({last_error}); run the fetch again, it resumes.")

    def _stream_range(self, piece: _Range) -> None:
        first = piece.start + piece.done
        range_header = {"Range": f"bytes={first}-{piece.end - 1}"}
        with self.client.stream("GET", self.url, headers={**self.headers, **range_header}) as response:
            if response.status_code != 206:
                raise self.transfer.error(f"a range request to {self.url} answered HTTP {response.status_code} (a "
                                          "signed CDN link may have expired); run the fetch again, it resumes.")
            for data in response.iter_bytes(CHUNK):
                if self.stop.is_set():
                    return
                data = data[: piece.remaining]
                os.pwrite(self.fd, data, piece.start + piece.done)
                self.transfer.meter.add(len(data))
                with self.lock:
                    piece.done += len(data)
                    self.transferred += len(data)
                self.progress.update(len(data))
                if piece.remaining <= 0:
                    return


def _fetch_ranges(client: httpx.Client, transfer: Transfer, probe: _Probe, headers: dict[str, str]) -> int:
    return _RangedDownload(client, transfer, probe, headers).run()


def _fetch_single(client: httpx.Client, transfer: Transfer, probe: _Probe, headers: dict[str, str]) -> int:
    """For servers without Range support (and the bench's single-stream baseline): one stream, no resume."""
    transferred = 0
    transfer.state_file.unlink(missing_ok=True)
    with client.stream("GET", probe.final_url, headers=headers) as response, transfer.partial.open("wb") as handle:
        if response.status_code != 200:
            raise transfer.error(f"{probe.final_url} answered HTTP {response.status_code}.")
        progress = Progress(transfer.dest.name, probe.total, 0, enabled=transfer.progress)
        try:
            for data in response.iter_bytes(CHUNK):
                handle.write(data)
                transfer.meter.add(len(data))
                transferred += len(data)
                progress.update(len(data))
        finally:
            progress.close()
    return transferred


def _fetch_with_pget(pget: str, transfer: Transfer) -> int:
    partial = transfer.partial
    partial.unlink(missing_ok=True)
    transfer.state_file.unlink(missing_ok=True)
    command = [pget, transfer.url, str(partial), "-c", str(transfer.connections)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0 or not partial.is_file():
        partial.unlink(missing_ok=True)
        raise transfer.error(f"pget failed ({done.returncode}): {done.stderr.strip()[-1000:]}.")
    return partial.stat().st_size


class Progress:
    """A progress bar where someone watches (stderr is a terminal); elsewhere (Cog setup logs, Kubernetes, CI) one
    plain line every PLAIN_PROGRESS_SECONDS and one at the end, instead of a bar's endless carriage returns."""

    def __init__(self, name: str, total: int, initial: int = 0, *, enabled: bool = True, stream: TextIO | None = None):
        self.name, self.total, self.done = name, total, initial
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.lock = threading.Lock()
        terminal = enabled and _is_terminal(self.stream)
        self.bar = tqdm(total=total or None, initial=initial, unit="B", unit_scale=True, desc=name,
                        file=self.stream) if terminal else None
        self.started = self.last_line = time.monotonic()
        self.started_at = initial

    def update(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)  # tqdm locks itself
            return
        with self.lock:
            self.done += n
            now = time.monotonic()
            if self.enabled and now - self.last_line >= PLAIN_PROGRESS_SECONDS:
                self.last_line = now
                self._line(now)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.enabled:
            with self.lock:
                self._line(time.monotonic(), finished=True)

    def _line(self, now: float, finished: bool = False) -> None:
        elapsed = max(now - self.started, 1e-9)
        rate = (self.done - self.started_at) / elapsed / (1 << 20)
        share = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        of = f" of {_gib(self.total)}" if self.total else ""
        state = "done" if finished else "downloading"
        print(f"{self.name}: {state} {_gib(self.done)}{of}{share}, {rate:.1f} MiB/s", file=self.stream, flush=True)


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or file-less stream
        return False
