"""What tests/test_soak.py measures after each prediction, and the table its failure messages show."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

MIB = 2**20


@dataclass(frozen=True)
class SoakSample:
    run: int
    rss: int
    output_bytes: int
    work_bytes: int
    temp_bytes: int
    run_folders: int


def disk_bytes(root: Path, exclude: str | None = None) -> int:
    """Bytes of every file under root (0 when it does not exist), leaving out the top-level `exclude`."""
    if not root.exists():
        return 0
    total = 0
    for path in root.rglob("*"):
        if exclude and path.relative_to(root).parts[0] == exclude:
            continue
        if path.is_file():
            total += path.stat().st_size
    return total


def format_samples(samples: list[SoakSample], every: int = 10) -> str:
    lines = [f"{'run':>5} {'RSS MiB':>9} {'outputs KiB':>12} {'work KiB':>9} {'tmp KiB':>8} {'folders':>8}"]
    for sample in samples:
        if sample.run == 1 or sample.run % every == 0:
            lines.append(
                f"{sample.run:>5} {sample.rss / MIB:>9.1f} {sample.output_bytes / 1024:>12.1f} "
                f"{sample.work_bytes / 1024:>9.1f} {sample.temp_bytes / 1024:>8.1f} {sample.run_folders:>8}"
            )
    first, settled, last = samples[0], samples[min(9, len(samples) - 1)], samples[-1]
    lines.append(
        f"RSS growth: run 1->{last.run} {(last.rss - first.rss) / MIB:+.1f} MiB, "
        f"run {settled.run}->{last.run} {(last.rss - settled.rss) / MIB:+.1f} MiB; "
        f"peak outputs {max(s.output_bytes for s in samples) / 1024:.1f} KiB"
    )
    return "\n".join(lines)
