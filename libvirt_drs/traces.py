"""PlanetLab trace loading for `drs simulate --trace`: a directory, one file per VM, one
CPU percent per line. The file reading lives at the edge; balancer.simulate gets the
(vms, steps) array only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from libvirt_drs.errors import UserError

F64 = npt.NDArray[np.float64]


class TraceError(UserError):
    """A trace that cannot be read: names the directory, file and line."""


def _read_file(path: Path) -> list[int]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TraceError(f"{path}: cannot read ({exc.__class__.__name__})") from None
    values: list[int] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        raw = line.strip()
        if not raw:
            continue
        try:
            value = int(raw)
        except ValueError:
            value = -1
        if not 0 <= value <= 100:
            raise TraceError(f"{path}:{lineno}: expected an integer CPU percent 0..100, "
                             f"got {raw[:40]!r}")
        values.append(value)
    if not values:
        raise TraceError(f"{path}: empty trace file")
    return values


def load_planetlab(directory: str | Path) -> tuple[list[str], F64]:
    """(VM names sorted, CPU demand in vCPUs as a (vms, steps) array)."""
    root = Path(directory)
    if not root.is_dir():
        raise TraceError(f"{root}: not a directory (expected one file per VM)")
    files = sorted(p for p in root.iterdir() if p.is_file() and not p.name.startswith("."))
    if not files:
        raise TraceError(f"{root}: no trace files")
    rows = [_read_file(p) for p in files]
    steps = len(rows[0])
    for path, row in zip(files, rows, strict=True):
        if len(row) != steps:
            raise TraceError(f"{path}: {len(row)} samples, expected {steps} like {files[0].name}")
    return [p.name for p in files], np.array(rows, dtype=np.float64) / 100.0
