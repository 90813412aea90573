"""The whole layout of a .safetensors file, checked from its header before anything loads it.

The format (huggingface/safetensors, "Format" in its README) is: 8 bytes little-endian header length N, N bytes
of JSON mapping tensor names to {dtype, shape, data_offsets}, then the data. The loader refuses a file whose
tensors' byte ranges overlap, leave a gap, do not start at 0 or do not end exactly at the end of the file, or
whose dtype x shape disagrees with its range; checking only each tensor on its own lets such a file into a
cache and fails later, inside ComfyUI. This module checks what the loader checks, reading only the header.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from math import prod
from pathlib import Path

from comfy_runtime.errors import InputRejected

# safetensors' own loader refuses headers over 100 MB; callers bound it lower for what they expect.
FORMAT_MAX_HEADER_BYTES = 100_000_000
ITEM_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8, "C64": 8,
}


class SafetensorsLayoutError(InputRejected):
    """A file that is not a loadable safetensors file; its message names the first problem found."""


@dataclass(frozen=True)
class SafetensorsLayout:
    keys: tuple[str, ...]
    data_bytes: int


def check_layout(
    path: Path, shown: str, *, max_header_bytes: int = FORMAT_MAX_HEADER_BYTES, max_tensors: int | None = None
) -> SafetensorsLayout:
    """The tensor names of a file whose whole layout is what safetensors requires, else SafetensorsLayoutError
    with one line naming the file (as `shown`), the problem and the fix."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            raise _bad(shown, f"is {size} bytes, too short for a safetensors file")
        (header_bytes,) = struct.unpack("<Q", head)
        if header_bytes > max_header_bytes:
            raise _bad(shown, f"declares a {header_bytes}-byte header; the limit is {max_header_bytes}")
        if 8 + header_bytes > size:
            raise _bad(shown, f"declares a {header_bytes}-byte header but the file is {size} bytes")
        raw = handle.read(header_bytes)
    try:
        header = json.loads(raw, object_pairs_hook=_refuse_duplicates)
    except _DuplicateName as duplicate:
        raise _bad(shown, f"names tensor {str(duplicate)[:120]!r} twice") from None
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise _bad(shown, "has a header that is not JSON") from None
    if not isinstance(header, dict):
        raise _bad(shown, "has a header that is not a JSON object")
    data_bytes = size - 8 - header_bytes
    metadata = header.get("__metadata__", {})
    if not (isinstance(metadata, dict) and all(isinstance(value, str) for value in metadata.values())):
        raise _bad(shown, "has __metadata__ that is not a table of strings")
    tensors = {name: spec for name, spec in header.items() if name != "__metadata__"}
    if max_tensors is not None and len(tensors) > max_tensors:
        raise _bad(shown, f"holds {len(tensors)} tensors; the limit is {max_tensors}")
    ranges = []
    for name, spec in tensors.items():
        begin, end = _tensor_range(name, spec, shown)
        ranges.append((begin, end, name))
    ranges.sort()
    expected = 0
    for begin, end, name in ranges:
        if begin < expected:
            raise _bad(shown, f"has tensor {name[:120]!r} at bytes {begin}-{end}, overlapping the one before it")
        if begin > expected:
            raise _bad(shown, f"leaves bytes {expected}-{begin} unused before tensor {name[:120]!r}")
        expected = end
    if expected != data_bytes:
        if expected > data_bytes:
            raise _bad(shown, f"has tensors up to byte {expected} but only {data_bytes} bytes of data (truncated?)")
        raise _bad(shown, f"has {data_bytes - expected} trailing bytes after its last tensor")
    return SafetensorsLayout(tuple(tensors), data_bytes)


class _DuplicateName(ValueError):
    pass


def _refuse_duplicates(pairs: list[tuple[str, object]]) -> dict:
    seen: dict = {}
    for key, value in pairs:
        if key in seen:
            raise _DuplicateName(key)
        seen[key] = value
    return seen


def _tensor_range(name: str, spec: object, shown: str) -> tuple[int, int]:
    label = f"tensor {name[:120]!r}"
    if not isinstance(spec, dict):
        raise _bad(shown, f"has no dtype/shape/data_offsets for {label}")
    dtype, shape, offsets = spec.get("dtype"), spec.get("shape"), spec.get("data_offsets")
    if dtype not in ITEM_BYTES:
        raise _bad(shown, f"gives {label} the unknown dtype {str(dtype)[:20]!r}")
    if not isinstance(shape, list) or not all(type(n) is int and n >= 0 for n in shape):
        raise _bad(shown, f"gives {label} a malformed shape")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(n) is int and n >= 0 for n in offsets)):
        raise _bad(shown, f"gives {label} malformed data_offsets")
    begin, end = offsets
    if end < begin:
        raise _bad(shown, f"gives {label} the reversed range {begin}-{end}")
    claimed = prod(shape) * ITEM_BYTES[dtype]
    if end - begin != claimed:
        raise _bad(shown, f"gives {label} {end - begin} bytes, but {dtype} x {shape} is {claimed} bytes")
    return begin, end


def _bad(shown: str, problem: str) -> SafetensorsLayoutError:
    return SafetensorsLayoutError(f"{shown} is not a loadable safetensors file: it {problem}. Re-save it with safetensors")
