"""Weights on disk against weights.manifest: fetch, verify, pin, and the cheap check at boot.

A full sha256 of ~35 GB takes minutes, so boot does not repeat it. After a file has been hashed in
full and matched its pin, a verification record is written beside the models
(`<models>/.verified/<folder>/<file>.json`): the size, the mtime, the pinned sha256, and a digest of
SAMPLES evenly spread sample blocks. At boot a pinned file must have the pinned size (catches
truncation), a record whose size, mtime and pin still match (a write to the file changes its mtime,
which sends it back to a full hash), and the same sampled digest (catches corruption that kept the
mtime, where it hits a sampled block). A file with no valid record is hashed in full once, then
recorded.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import httpx

from comfy_runtime.errors import HunyuanVideoError
from comfy_runtime.supply.commands import WEIGHTS_FETCH_COMMAND as FETCH_COMMAND
from comfy_runtime.supply.commands import WEIGHTS_LOCK_COMMAND as LOCK_COMMAND
from comfy_runtime.supply.commands import WEIGHTS_VERIFY_COMMAND
from comfy_runtime.supply.digest import sha256_of
from comfy_runtime.supply.download import DownloadError, fetch, partial_path, url_origin
from comfy_runtime.supply.hugging_face import hf_auth_headers, hf_endpoint
from comfy_runtime.supply.manifest import MANIFEST_PATH, WeightEntry, load_manifest

log = logging.getLogger(__name__)

WeightsMode = Literal["bake", "lazy", "off"]
RECORD_DIR = ".verified"
SAMPLES = 64
SAMPLE_BYTES = 64 << 10
RECORD_VERSION = 1


class WeightsError(HunyuanVideoError, RuntimeError):
    pass


# -- where a weight comes from ------------------------------------------------------------------
def source_url(entry: WeightEntry) -> str:
    if entry.url:
        return entry.url
    if not (entry.hf_repo and entry.hf_path):
        raise WeightsError(f"{entry.relative_path}: the manifest gives neither url nor hf_repo + hf_path; add one")
    return f"{hf_endpoint()}/{entry.hf_repo}/resolve/{entry.hf_revision or 'main'}/{entry.hf_path}"


# -- which weights a workflow needs --------------------------------------------------------------
def required_entries(graph: dict[str, Any], entries: Iterable[WeightEntry]) -> list[WeightEntry]:
    """The manifest entries the graph names in a node input (a loader's file name)."""
    named = {value for node in graph.values() for value in node.get("inputs", {}).values() if isinstance(value, str)}
    return [entry for entry in entries if entry.file in named or str(entry.relative_path) in named]


# -- verification records ------------------------------------------------------------------------
@dataclass(frozen=True)
class Record:
    version: int
    size: int
    mtime: int  # whole seconds: image layers and copies keep seconds, not always nanoseconds
    sha256: str
    sampled: str


def record_path(models_dir: Path, entry: WeightEntry) -> Path:
    return Path(models_dir) / RECORD_DIR / entry.folder / f"{entry.file}.json"


def sample_offsets(size: int, samples: int = SAMPLES, block: int = SAMPLE_BYTES) -> list[int]:
    """Evenly spread block offsets; the first and the last block of the file are always among them."""
    if size <= samples * block:
        return list(range(0, size, block))
    last = size - block
    return sorted({round(i * last / (samples - 1)) for i in range(samples)})


def sampled_digest(path: Path, size: int | None = None) -> str:
    size = path.stat().st_size if size is None else size
    digest = hashlib.sha256(str(size).encode())
    with path.open("rb") as handle:
        for offset in sample_offsets(size):
            handle.seek(offset)
            digest.update(handle.read(SAMPLE_BYTES))
    return digest.hexdigest()


def write_record(models_dir: Path, entry: WeightEntry, path: Path, sha256: str) -> bool:
    """Record a full verification. False (with a warning) where the models folder is read-only."""
    stat = path.stat()
    record = Record(RECORD_VERSION, stat.st_size, int(stat.st_mtime), sha256, sampled_digest(path, stat.st_size))
    target = record_path(models_dir, entry)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_text(json.dumps(asdict(record)))
        os.replace(tmp, target)
    except OSError as error:
        log.warning(
            "cannot write the verification record %s (%s): every boot will hash %s in full. Run `%s` where the "
            "models folder is writable (or bake the weights) so the record exists.", target, error, path.name,
            WEIGHTS_VERIFY_COMMAND,
        )
        return False
    return True


def read_record(models_dir: Path, entry: WeightEntry) -> Record | None:
    try:
        data = json.loads(record_path(models_dir, entry).read_text())
        record = Record(**data)
    except (OSError, ValueError, TypeError):
        return None
    return record if record.version == RECORD_VERSION else None


# -- checks ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Problem:
    entry: WeightEntry
    path: Path
    kind: Literal["missing", "size", "checksum", "sampled"]
    detail: str

    def message(self, fix: str) -> str:
        return f"weight {self.entry.relative_path} ({self.path}): {self.detail}. Fix: {fix}"


def check_file(models_dir: Path, entry: WeightEntry, *, full: bool = False) -> Problem | None:
    """None when the file is whole. Cheap for a pinned file with a valid record unless full=True; a pinned file
    without one is hashed in full and recorded. Unpinned entries are checked only for presence."""
    path = Path(models_dir) / entry.relative_path
    if not path.is_file():
        return Problem(entry, path, "missing", "the file is missing")
    if not entry.pinned:
        return None
    stat = path.stat()
    if stat.st_size != entry.size:
        what = "truncated" if stat.st_size < entry.size else "too large"
        return Problem(entry, path, "size", f"{what}: {stat.st_size} bytes, the manifest pins {entry.size}")
    pin = entry.sha256.lower()
    record = None if full else read_record(models_dir, entry)
    if record and record.size == stat.st_size and record.mtime == int(stat.st_mtime) and record.sha256 == pin:
        if sampled_digest(path, stat.st_size) != record.sampled:
            return Problem(
                entry, path, "sampled",
                "its content changed since it was verified (sampled blocks differ from the verification record; "
                "disk corruption or an in-place edit)",
            )
        return None
    log.info("hashing %s in full (%.2f GiB): no valid verification record yet", path, stat.st_size / (1 << 30))
    actual = sha256_of(path)
    if actual != pin:
        return Problem(entry, path, "checksum", f"checksum mismatch: sha256 {actual}, the manifest pins {pin}")
    write_record(models_dir, entry, path, actual)
    return None


def unpinned_warning(entries: Iterable[WeightEntry]) -> str | None:
    names = [str(e.relative_path) for e in entries if not e.pinned]
    if not names:
        return None
    return (
        f"UNPINNED WEIGHTS: {', '.join(names)} have no size/sha256/revision in the manifest, so a truncated or "
        f"swapped file cannot be detected. Run `{LOCK_COMMAND}` on a machine with network access and commit "
        "weights.manifest."
    )


def ensure_weights(
    graph: dict[str, Any], models_dir: Path, mode: WeightsMode, manifest: Path, *, connections: int = 8
) -> list[WeightEntry]:
    """Boot-time check of the weights this graph loads; lazy mode fetches what is missing or broken.
    Raises WeightsError naming each bad file and the command that fixes it."""
    entries = required_entries(graph, load_manifest(manifest))
    if not entries:
        return entries
    warning = unpinned_warning(entries)
    if warning:
        log.warning("!" * 20 + " %s " + "!" * 20, warning)
    problems = [problem for entry in entries if (problem := check_file(models_dir, entry)) is not None]
    if mode == "lazy" and problems:
        log.warning("%s", lazy_fetch_notice(models_dir, [p.entry for p in problems]))
        for problem in problems:
            repair(models_dir, problem, connections=connections)
        return entries
    if problems:
        fix = _fix_for(mode, models_dir, manifest)
        raise WeightsError("\n".join(p.message(fix) for p in problems))
    return entries


def lazy_fetch_notice(models_dir: Path, entries: list[WeightEntry]) -> str:
    """Said before a lazy fetch starts: it may be tens of GB that `make predict` or `make serve` start unasked."""
    known = sum(e.size for e in entries if e.pinned)
    unsized = sum(1 for e in entries if not e.pinned)
    hosts = sorted({url_origin(source_url(e))[1] for e in entries})
    size = f"{known / (1 << 30):.1f} GiB" + (f" plus {unsized} of unknown size" if unsized else "")
    return (f"HV_WEIGHTS_MODE=lazy: downloading {len(entries)} weight file(s), {size}, from {', '.join(hosts)} into "
            f"{Path(models_dir).resolve()} before the first render. Ctrl-C stops it (the next run resumes). To fetch "
            f"them on purpose first: `{FETCH_COMMAND}`; to refuse instead of downloading: HV_WEIGHTS_MODE=off; to try "
            "the set-up without weights: HV_WORKFLOW=plumbing_video")


def _fix_for(mode: WeightsMode, models_dir: Path, manifest: Path) -> str:
    custom = Path(manifest).resolve() != MANIFEST_PATH.resolve()
    env = f"HV_MODELS_DIR={models_dir}" + (f" HV_WEIGHTS_MANIFEST={manifest}" if custom else "")
    command = f"`{env} {FETCH_COMMAND}` (it re-downloads what is missing or broken)"
    if mode == "bake":
        return f"{command} before `cog build`, or rebuild the image; or set HV_WEIGHTS_MODE=lazy to fetch at setup"
    return f"{command}, or set HV_WEIGHTS_MODE=lazy to fetch at setup"


# -- fetch / verify / lock (the CLI) -------------------------------------------------------------
def fetch_entry(models_dir: Path, entry: WeightEntry, *, connections: int = 8, progress: bool = True) -> Path:
    dest = Path(models_dir) / entry.relative_path
    url = source_url(entry)
    if not entry.pinned:
        log.warning("%s is unpinned: fetching %s without a checksum to compare against", entry.relative_path, url)
    try:
        fetched = fetch(
            url, dest, size=entry.size if entry.pinned else 0, sha256=entry.sha256 if entry.pinned else "",
            connections=connections, progress=progress, fix=f"Re-run `{FETCH_COMMAND}`; it resumes.",
            headers=hf_auth_headers(url),
        )
    except DownloadError as error:
        raise WeightsError(str(error)) from error
    if entry.pinned:
        write_record(models_dir, entry, dest, fetched.sha256)
    return dest


def repair(models_dir: Path, problem: Problem, *, connections: int = 8, progress: bool = True) -> Path:
    """Fetch a file that is missing or failed its check (the one re-fetch path of lazy boots and `weights fetch`)."""
    if problem.kind != "missing":
        log.warning("%s; fetching it again", problem.detail)
        # A file that failed its check must not survive under its name if the fetch fails too.
        problem.path.unlink(missing_ok=True)
    return fetch_entry(models_dir, problem.entry, connections=connections, progress=progress)


def fetch_all(
    models_dir: Path, entries: Iterable[WeightEntry], *, connections: int = 8, progress: bool = True
) -> list[Path]:
    fetched = []
    for entry in entries:
        problem = check_file(models_dir, entry)
        if problem is None:
            log.info("%s: present%s", entry.relative_path, " and verified" if entry.pinned else " (unpinned: not verifiable)")
            continue
        fetched.append(repair(models_dir, problem, connections=connections, progress=progress))
    return fetched


def verify_all(models_dir: Path, entries: Iterable[WeightEntry]) -> list[Problem]:
    """Full hash of every present pinned file (records refreshed); missing files are problems too."""
    return [p for entry in entries if (p := check_file(models_dir, entry, full=True)) is not None]


@dataclass(frozen=True)
class Pin:
    size: int
    sha256: str
    hf_revision: str = ""


def resolve_pin(entry: WeightEntry, models_dir: Path, *, connections: int = 8) -> Pin:
    """What the source serves now. Hugging Face tells size, sha256 and commit in headers (no download); a plain
    URL is downloaded (into the models folder, where it is needed anyway) and hashed."""
    url = source_url(entry)
    if entry.hf_repo and not entry.url:
        try:
            response = httpx.head(url, headers=hf_auth_headers(url), follow_redirects=False, timeout=60)
        except httpx.HTTPError as error:
            raise WeightsError(f"{entry.relative_path}: cannot reach {url}: {error}") from error
        if response.status_code >= 400:
            raise WeightsError(f"{entry.relative_path}: {url} answered HTTP {response.status_code}; check hf_repo/hf_path")
        etag = response.headers.get("x-linked-etag", response.headers.get("etag", "")).strip('"').removeprefix("W/").strip('"')
        size = response.headers.get("x-linked-size", response.headers.get("content-length", ""))
        revision = response.headers.get("x-repo-commit", "")
        if re.fullmatch(r"[0-9a-f]{64}", etag) and size.isdigit() and re.fullmatch(r"[0-9a-f]{40}", revision):
            return Pin(size=int(size), sha256=etag, hf_revision=revision)
        raise WeightsError(
            f"{entry.relative_path}: {url} did not report an LFS sha256, size and commit (got etag {etag!r}, "
            f"size {size!r}, commit {revision!r}); is it stored with Git LFS?"
        )
    fetched = fetch(url, Path(models_dir) / entry.relative_path, connections=connections, headers=hf_auth_headers(url))
    return Pin(size=fetched.size, sha256=fetched.sha256)


def lock_manifest(manifest: Path, models_dir: Path, *, connections: int = 8) -> list[WeightEntry]:
    """Fill in size, sha256 (and hf_revision) of every unpinned entry, in place; comments stay."""
    text = manifest.read_text()
    blocks = re.split(r"(?m)^(?=\[\[weight\]\])", text)
    entries = load_manifest(manifest)
    weight_blocks = [i for i, block in enumerate(blocks) if block.startswith("[[weight]]")]
    assert len(weight_blocks) == len(entries)
    changed = []
    for index, entry in zip(weight_blocks, entries, strict=True):
        if entry.pinned:
            continue
        pin = resolve_pin(entry, models_dir, connections=connections)
        block = _set_key(blocks[index], "size", str(pin.size))
        block = _set_key(block, "sha256", f'"{pin.sha256}"')
        if pin.hf_revision:
            block = _set_key(block, "hf_revision", f'"{pin.hf_revision}"')
        blocks[index] = block
        changed.append(entry)
    manifest.write_text("".join(blocks))
    return changed


def _set_key(block: str, key: str, value: str) -> str:
    pattern = re.compile(rf"(?m)^{key}\s*=.*$")
    if pattern.search(block):
        return pattern.sub(f"{key} = {value}", block, count=1)
    return block.rstrip("\n") + f"\n{key} = {value}\n\n"


def leftovers(models_dir: Path, entry: WeightEntry) -> list[Path]:
    """Files an interrupted fetch leaves (resumable): reported by verify so nobody deletes them by mistake."""
    partial = partial_path(Path(models_dir) / entry.relative_path)
    return [p for p in (partial, partial.with_name(partial.name + ".json")) if p.exists()]
