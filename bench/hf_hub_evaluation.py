"""huggingface_hub (+ hf-xet) against comfy_runtime's downloader, on the three rules the downloader's tests hold it
to: (1) an interrupted download resumes, (2) the sha256 pin is checked before the file gets its final name, (3) the
token goes to Hugging Face only, never to the host a redirect leads to.

Both clients fetch from local_servers/range_server.py on 127.0.0.1 posing as the Hugging Face endpoint (HF_ENDPOINT):
the resolve URL answers HEAD with X-Repo-Commit, X-Linked-Etag (the sha256) and X-Linked-Size, as the hub does.
Scenario 2 serves bytes that differ from the pinned sha256 but have the pinned size (a corrupted or swapped
object). Scenario 3 redirects the resolve URL to a second server on another origin (a CDN) and records the
Authorization header each one saw. Prints one line per rule and client; run once:

    .venv/bin/python bench/hf_hub_evaluation.py
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from comfy_runtime.supply.download import DownloadError, fetch  # noqa: E402
from local_servers.range_server import RangeServer  # noqa: E402

SIZE = 8 * (1 << 20) + 4321
RESUME_SIZE = 40 * (1 << 20) + 4321
REPO, REVISION, FILE = "org/repo", "0123456789abcdef0123456789abcdef01234567", "split_files/vae/v.safetensors"
RESOLVE = f"/{REPO}/resolve/{REVISION}/{FILE}"
TOKEN = "hf_evaluation_token"


def hub_headers(data: bytes) -> dict[str, str]:
    digest = hashlib.sha256(data).hexdigest()
    return {"X-Repo-Commit": REVISION, "X-Linked-Etag": f'"{digest}"', "ETag": f'"{digest}"',
            "X-Linked-Size": str(len(data))}


def hub_download(endpoint: str, local_dir: Path, token: str | None = None) -> Path:
    env_code = (
        "import sys; from huggingface_hub import hf_hub_download; "
        f"print(hf_hub_download({REPO!r}, {FILE!r}, revision={REVISION!r}, local_dir={str(local_dir)!r}, "
        f"token={token!r}))"
    )
    done = subprocess.run([sys.executable, "-c", env_code], env={**os.environ, "HF_ENDPOINT": endpoint,
                          "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_OFFLINE": "0"},
                          capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip().splitlines()[-1])
    return Path(done.stdout.strip().splitlines()[-1])


def ours(endpoint: str, dest: Path, data: bytes, pinned: bytes, token: str | None = None) -> Path:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    fetch(f"{endpoint}{RESOLVE}", dest, size=len(pinned), sha256=hashlib.sha256(pinned).hexdigest(), connections=4,
          progress=False, use_pget=False, headers=headers)
    return dest


def rule_sha256_before_final_name(work: Path) -> dict[str, str]:
    pinned = os.urandom(SIZE)
    served = bytearray(pinned)
    served[SIZE // 2] ^= 0xFF  # same size, other bytes
    root = work / "served-corrupt"
    root.mkdir()
    (root / "v.bin").write_bytes(bytes(served))
    results = {}
    with RangeServer(root) as hub:
        hub.aliases[RESOLVE] = "v.bin"
        hub.extra_headers[RESOLVE] = hub_headers(pinned)  # the hub's metadata: the pinned sha256 and size
        try:
            path = hub_download(hub.url, work / "hub")
            kept = path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() != hashlib.sha256(pinned).hexdigest()
            results["huggingface_hub"] = ("FAIL: the corrupt file was given its final name " + str(path.name)
                                          if kept else "pass")
        except RuntimeError as error:
            results["huggingface_hub"] = f"pass (refused: {error})"
        try:
            ours(hub.url, work / "ours" / "v.safetensors", bytes(served), pinned)
            results["comfy_runtime"] = "FAIL: accepted"
        except DownloadError:
            final = (work / "ours" / "v.safetensors").exists()
            results["comfy_runtime"] = "FAIL: final name written" if final else "pass (checksum mismatch, nothing under the final name)"
    return results


def rule_resume(work: Path) -> dict[str, str]:
    # Larger than the others: huggingface_hub writes in 10 MB chunks, so a kill before the first one is on disk
    # would leave it nothing to resume from, which says nothing about resuming a 25 GB file.
    size = RESUME_SIZE
    data = os.urandom(size)
    root = work / "served-resume"
    root.mkdir()
    (root / "v.bin").write_bytes(data)
    results = {}
    # Where each response is held until the kill: huggingface_hub streams the file in one response; ours splits it
    # into 16 ranges over 4 connections, so a hold at 3/4 of the file would never be reached by any one of them
    # and the whole file went out before the kill. Half a range keeps every connection mid-range.
    holds = {"huggingface_hub": size * 3 // 4, "comfy_runtime": size // 16 // 2}
    for client in ("huggingface_hub", "comfy_runtime"):
        target = work / f"resume-{client}"
        with RangeServer(root, hold_each_after=holds[client]) as hub:
            hub.aliases[RESOLVE] = "v.bin"
            hub.extra_headers[RESOLVE] = hub_headers(data)
            if client == "huggingface_hub":
                code = (f"from huggingface_hub import hf_hub_download; hf_hub_download({REPO!r}, {FILE!r}, "
                        f"revision={REVISION!r}, local_dir={str(target)!r})")
            else:
                code = (f"from pathlib import Path; from comfy_runtime.supply.download import fetch; "
                        f"fetch({hub.url + RESOLVE!r}, Path({str(target / 'v.safetensors')!r}), size={size}, "
                        f"sha256={hashlib.sha256(data).hexdigest()!r}, connections=4, progress=False, use_pget=False)")
            child = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, start_new_session=True,
                                     env={**os.environ, "HF_ENDPOINT": hub.url}, stderr=subprocess.DEVNULL)
            deadline, seen = time.monotonic() + 60, -1
            while (hub.bytes_sent == 0 or hub.bytes_sent != seen) and time.monotonic() < deadline:
                seen = hub.bytes_sent  # until every open response is held (nothing more goes out)
                time.sleep(0.5)
            time.sleep(0.5)  # let the client write what it received
            os.killpg(child.pid, signal.SIGKILL)
            child.wait(timeout=10)
            first = hub.bytes_sent
            hub.hold_each_after = None
            hub.release.set()
            before = hub.bytes_sent
            try:
                if client == "huggingface_hub":
                    path = hub_download(hub.url, target)
                else:
                    path = ours(hub.url, target / "v.safetensors", data, data)
                again = hub.bytes_sent - before
                whole = path.read_bytes() == data
                # Resume tested only when the kill landed mid-file; resumed only when the second run fetched
                # some but not all of it.
                resumed = first < size and 0 < again < size and whole
                results[client] = (f"{'pass' if resumed else 'FAIL'}: first run sent {first} B before "
                                   f"the kill, the second fetched {again} of {size} B, file whole: {whole}")
            except RuntimeError as error:
                results[client] = f"FAIL: {error}"
    return results


def rule_token_only_to_hf(work: Path) -> dict[str, str]:
    data = os.urandom(SIZE)
    root = work / "served-token"
    root.mkdir()
    (root / "v.bin").write_bytes(data)
    results = {}
    for client in ("huggingface_hub", "comfy_runtime"):
        with RangeServer(root) as hub, RangeServer(root) as cdn:
            cdn_url = cdn.url.replace("127.0.0.1", "localhost") + "/v.bin"  # another origin
            hub.redirects[RESOLVE] = cdn_url
            hub.extra_headers[RESOLVE] = hub_headers(data)
            try:
                if client == "huggingface_hub":
                    hub_download(hub.url, work / f"token-{client}", token=TOKEN)
                else:
                    ours(hub.url, work / f"token-{client}" / "v.safetensors", data, data, token=TOKEN)
            except (RuntimeError, DownloadError) as error:
                results[client] = f"FAIL: {error}"
                continue
            to_hub = sum(auth == f"Bearer {TOKEN}" for _path, auth in hub.authorizations)
            to_cdn = sum(auth is not None and TOKEN in auth for _path, auth in cdn.authorizations)
            results[client] = (f"{'pass' if to_cdn == 0 and to_hub else 'FAIL'}: token sent to the hub "
                               f"{to_hub}x, to the CDN {to_cdn}x (of {len(cdn.authorizations)} CDN requests)")
    return results


def main() -> None:
    print(f"huggingface_hub {metadata.version('huggingface_hub')}, hf-xet {metadata.version('hf-xet')}, "
          f"{SIZE} B file ({RESUME_SIZE} B to resume), {os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d')}")
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        table = {
            "resume after a kill": rule_resume(work),
            "sha256 before the final name": rule_sha256_before_final_name(work),
            "token only to Hugging Face": rule_token_only_to_hf(work),
        }
    for rule, results in table.items():
        for client, outcome in results.items():
            print(f"{rule:30s} {client:16s} {outcome}")
    print(json.dumps(table))


if __name__ == "__main__":
    main()
