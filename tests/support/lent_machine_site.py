"""Builds the site-packages view of the lent GPU machine for tests/support/lent_machine/sitecustomize.py."""

from __future__ import annotations

import sysconfig
from collections.abc import Iterable
from pathlib import Path


def _record_tops(dist_info: Path) -> set[str]:
    record = dist_info / "RECORD"
    if not record.is_file():
        return set()
    tops = set()
    for line in record.read_text().splitlines():
        first = line.split(",")[0].split("/")[0]
        if first and not first.endswith((".dist-info", ".data")) and first not in ("..", "__pycache__", "bin"):
            tops.add(first.split(".")[0])
    return tops


def build_lent_site(target: Path, allowed: Iterable[str]) -> Path:
    """Links to this venv's packages whose import names are allowed, with their dist-info and vendored libs."""
    allowed = set(allowed)
    site_packages = Path(sysconfig.get_paths()["purelib"])
    target.mkdir(parents=True, exist_ok=True)
    for entry in site_packages.iterdir():
        name = entry.name
        if name.endswith(".dist-info"):
            keep = bool(_record_tops(entry) & allowed)
        elif name.endswith(".libs"):  # shared libraries a wheel vendors (numpy.libs, pillow.libs ...)
            keep = True
        elif name.endswith(".pth") or name == "__pycache__":
            keep = False
        else:
            keep = name.split(".")[0] in allowed
        if keep:
            (target / name).symlink_to(entry)
    return target
