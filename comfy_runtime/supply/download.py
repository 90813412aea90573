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
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
from tqdm import tqdm

from comfy_runtime.errors import HunyuanVideoError
from comfy_runtime.supply.comfyui_source import sha256_of
from comfy_runtime.supply.commands import WEIGHTS_LOCK_COMMAND

CHUNK = 1 << 20
# Headroom over the file itself: a disk filled to the last byte breaks everything else on it.
SPACE_MARGIN = 256 << 20
STATE_FLUSH_SECONDS = 0.2
ATTEMPTS_PER_RANGE = 4


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
) -> Fetched:
    """Download url to dest. size/sha256 (when known) must match or nothing is left under dest.

    fix: the command that repairs things (named in every error). headers: e.g. a Hugging Face token (httpx drops
    Authorization when a redirect leaves the host, so the CDN never sees it).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    hint = f" {fix}" if fix else ""
    # Pods sharing one volume (a ReadWriteMany PVC in lazy mode) must not write one .partial together:
    # the second waits, then finds the file already there and verified.
    with _exclusive(dest):
        return _fetch_locked(url, dest, size, sha256, connections, hint, progress, use_pget, timeout, headers or {})


@contextlib.contextmanager
def _exclusive(dest: Path):
    lock_path = dest.with_name(dest.name + ".lock")
    with lock_path.open("a") as handle:
        fcntl.lockf(handle, fcntl.LOCK_EX)  # lockf, not flock: NFS-backed volumes honour it
        try:
            yield
        finally:
            fcntl.lockf(handle, fcntl.LOCK_UN)


def _fetch_locked(
    url: str, dest: Path, size: int, sha256: str, connections: int, hint: str, progress: bool, use_pget: bool,
    timeout: float, headers: dict[str, str],
) -> Fetched:
    if size and sha256 and dest.is_file() and dest.stat().st_size == size and sha256_of(dest) == sha256.lower():
        return Fetched(path=dest, size=size, sha256=sha256.lower(), bytes_transferred=0)
    partial, state_file = partial_path(dest), _state_path(dest)
    if size:
        _check_space(dest, size - _resumable_bytes(partial, state_file, size), hint)
    pget = shutil.which("pget") if use_pget and not headers else None  # pget takes no headers
    if pget:
        transferred = _fetch_with_pget(pget, url, partial, connections, dest, hint)
    else:
        with httpx.Client(follow_redirects=True, timeout=timeout,
                          limits=httpx.Limits(max_connections=connections + 1)) as client:
            total, ranged, final_url = _probe(client, url, dest, hint, headers)
            # The ranges go straight to where the redirect led (a CDN): credentials stay with the host they are for.
            if url_origin(final_url) != url_origin(url):
                headers = {}
            if size and total != size:
                raise DownloadError(
                    f"{dest.name}: the server reports {total} bytes, the manifest pins {size}. The source changed "
                    f"or the manifest is wrong: check {url}, then re-pin with `{WEIGHTS_LOCK_COMMAND}`.{hint}"
                )
            if not size:
                _check_space(dest, total - _resumable_bytes(partial, state_file, total), hint)
            if ranged and total > 0:
                transferred = _fetch_ranges(
                    client, final_url, partial, state_file, total, connections, progress, dest, hint, headers
                )
            else:
                transferred = _fetch_single(client, final_url, partial, total, progress, dest, hint, headers)
    actual_size = partial.stat().st_size
    if size and actual_size != size:
        _discard(partial, state_file)
        raise DownloadError(f"{dest.name}: got {actual_size} bytes, expected {size}; the partial file was removed.{hint}")
    digest = sha256_of(partial)
    if sha256 and digest != sha256.lower():
        _discard(partial, state_file)
        raise DownloadError(
            f"{dest.name}: checksum mismatch: expected sha256 {sha256.lower()}, got {digest} ({url}). "
            f"The download was removed; nothing was written under {dest}. If the source really changed, "
            f"re-pin with `{WEIGHTS_LOCK_COMMAND}`.{hint}"
        )
    os.replace(partial, dest)
    state_file.unlink(missing_ok=True)
    return Fetched(path=dest, size=actual_size, sha256=digest, bytes_transferred=transferred)


def url_origin(url: str) -> tuple[str, str, int | None]:
    parsed = httpx.URL(url)
    return parsed.scheme, parsed.host, parsed.port


def _discard(partial: Path, state_file: Path) -> None:
    partial.unlink(missing_ok=True)
    state_file.unlink(missing_ok=True)


def _check_space(dest: Path, needed: int, hint: str) -> None:
    free = shutil.disk_usage(dest.parent).free
    if needed + SPACE_MARGIN > free:
        raise DownloadError(
            f"{dest.name}: not enough disk space in {dest.parent}: needs {_gib(needed)} more "
            f"(+{_gib(SPACE_MARGIN)} headroom), {_gib(free)} free. Free space there or point HV_MODELS_DIR "
            f"at a larger volume.{hint}"
        )


def _gib(n: int) -> str:
    return f"{n / (1 << 30):.2f} GiB"


def _probe(client: httpx.Client, url: str, dest: Path, hint: str, headers: dict[str, str]) -> tuple[int, bool, str]:
    """(total size, whether ranges work, the URL after redirects) from a one-byte range request."""
    try:
        with client.stream("GET", url, headers={**headers, "Range": "bytes=0-0"}) as response:
            status = response.status_code
            if status == 404:
                raise DownloadError(f"{dest.name}: {url} answered 404 Not Found. Check the url/hf_path in the "
                                    f"manifest (and hf_revision); the file may have moved.{hint}")
            if status in (401, 403):
                raise DownloadError(f"{dest.name}: {url} answered {status}: the source needs credentials "
                                    f"(for Hugging Face set HF_TOKEN) or the link expired.{hint}")
            if status == 206:
                content_range = response.headers.get("content-range", "")
                total = content_range.rpartition("/")[2]
                if not total.isdigit():
                    raise DownloadError(f"{dest.name}: {url} sent no usable Content-Range ({content_range!r}).{hint}")
                return int(total), True, str(response.url)
            if status == 200:
                length = response.headers.get("content-length", "")
                return (int(length) if length.isdigit() else 0), False, str(response.url)
            raise DownloadError(f"{dest.name}: {url} answered HTTP {status}.{hint}")
    except httpx.HTTPError as error:
        raise DownloadError(f"{dest.name}: cannot reach {url}: {error}.{hint}") from error


def _resumable_bytes(partial: Path, state_file: Path, total: int) -> int:
    ranges = _load_state(partial, state_file, total)
    return sum(r.done for r in ranges) if ranges else 0


def _load_state(partial: Path, state_file: Path, total: int) -> list[_Range] | None:
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


def _fetch_ranges(
    client: httpx.Client, url: str, partial: Path, state_file: Path, total: int, connections: int,
    progress: bool, dest: Path, hint: str, headers: dict[str, str],
) -> int:
    ranges = _load_state(partial, state_file, total)
    if ranges is None:
        with partial.open("wb") as handle:
            handle.truncate(total)  # sparse: each range writes at its own offset
        ranges = _plan(total, connections)
    _save_state(state_file, total, ranges)
    already = sum(r.done for r in ranges)
    transferred = [0]
    lock = threading.Lock()
    stop = threading.Event()
    bar = tqdm(total=total, initial=already, unit="B", unit_scale=True, desc=dest.name, disable=not progress)
    fd = os.open(partial, os.O_WRONLY)

    def flusher() -> None:
        while not stop.wait(STATE_FLUSH_SECONDS):
            with lock:
                _save_state(state_file, total, ranges)

    def one_range(piece: _Range) -> None:
        last_error: Exception | None = None
        for _attempt in range(ATTEMPTS_PER_RANGE):
            if piece.remaining <= 0 or stop.is_set():
                return
            first = piece.start + piece.done
            try:
                range_header = {"Range": f"bytes={first}-{piece.end - 1}"}
                with client.stream("GET", url, headers={**headers, **range_header}) as response:
                    if response.status_code != 206:
                        raise DownloadError(
                            f"{dest.name}: a range request to {url} answered HTTP {response.status_code} (a signed "
                            f"CDN link may have expired); run the fetch again, it resumes.{hint}"
                        )
                    for data in response.iter_bytes(CHUNK):
                        if stop.is_set():
                            return
                        data = data[: piece.remaining]
                        os.pwrite(fd, data, piece.start + piece.done)
                        with lock:
                            piece.done += len(data)
                            transferred[0] += len(data)
                        bar.update(len(data))
                        if piece.remaining <= 0:
                            return
            except httpx.HTTPError as error:
                last_error = error
        if piece.remaining > 0:
            raise DownloadError(f"{dest.name}: bytes {piece.start}-{piece.end - 1} failed after "
                                f"{ATTEMPTS_PER_RANGE} attempts ({last_error}); run the fetch again, it resumes.{hint}")

    flushing = threading.Thread(target=flusher, daemon=True)
    flushing.start()
    try:
        with ThreadPoolExecutor(max_workers=connections, thread_name_prefix="fetch") as pool:
            futures = [pool.submit(one_range, piece) for piece in ranges if piece.remaining > 0]
            try:
                for future in futures:
                    future.result()
            except BaseException:
                stop.set()  # one range failed for good (or Ctrl-C): the others stop too, the state keeps their bytes
                raise
    finally:
        stop.set()
        flushing.join()
        os.close(fd)
        with lock:
            _save_state(state_file, total, ranges)
        bar.close()
    return transferred[0]


def _fetch_single(
    client: httpx.Client, url: str, partial: Path, total: int, progress: bool, dest: Path, hint: str = "",
    headers: dict[str, str] | None = None,
) -> int:
    """For servers without Range support (and the bench's single-stream baseline): one stream, no resume."""
    transferred = 0
    _state_path(dest).unlink(missing_ok=True)
    with client.stream("GET", url, headers=headers or {}) as response, partial.open("wb") as handle:
        if response.status_code != 200:
            raise DownloadError(f"{dest.name}: {url} answered HTTP {response.status_code}.{hint}")
        with tqdm(total=total or None, unit="B", unit_scale=True, desc=dest.name, disable=not progress) as bar:
            for data in response.iter_bytes(CHUNK):
                handle.write(data)
                transferred += len(data)
                bar.update(len(data))
    return transferred


def _fetch_with_pget(pget: str, url: str, partial: Path, connections: int, dest: Path, hint: str) -> int:
    partial.unlink(missing_ok=True)
    _state_path(dest).unlink(missing_ok=True)
    done = subprocess.run([pget, url, str(partial), "-c", str(connections)], capture_output=True, text=True)
    if done.returncode != 0 or not partial.is_file():
        partial.unlink(missing_ok=True)
        raise DownloadError(f"{dest.name}: pget failed ({done.returncode}): {done.stderr.strip()[-1000:]}.{hint}")
    return partial.stat().st_size
