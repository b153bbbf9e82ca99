"""`lab up --config-out`: a drs config (TOML) naming every lab host with its capacity."""

from __future__ import annotations

import json
from pathlib import Path

from libvirt_drs.lab.state import LabState


def _q(text: str) -> str:
    return json.dumps(text)  # a JSON string is a valid TOML basic string


def render(lab: LabState, database_url: str) -> str:
    lines = [
        f"# drs config for lab {lab.name!s}, written by `drs lab up --config-out`.",
        f"# Storage mode: {lab.storage}. Host capacity is configured (all lab hosts share",
        "# the same physical CPUs, so libvirt's node figures mean nothing here).",
        "",
        "[database]",
        f"url = {_q(database_url)}",
        "",
    ]
    for h in lab.hosts:
        storage_group = f"{lab.name}-shared" if lab.storage == "shared" else f"{lab.name}-{h.name}"
        lines += [
            "[[hosts]]",
            f"name = {_q(h.name)}",
            f"uri = {_q(h.uri)}",
            f"cpu_cores = {float(lab.host_cpu_cores)!r}",
            f"mem_mib = {int(lab.host_mem_mib)}",
            f"group = {_q(lab.name)}",
            f"storage_group = {_q(storage_group)}",
            "",
        ]
    lines += [
        "[migrator]",
        f"copy_storage = {'false' if lab.storage == 'shared' else 'true'}",
        "",
    ]
    return "\n".join(lines)


def write(lab: LabState, path: Path, database_url: str | None = None) -> Path:
    """Write the config; the default database is a SQLite file inside the lab directory."""
    url = database_url or f"sqlite:///{Path(lab.dir) / 'drs.sqlite'}"
    path = path.resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(lab, url), encoding="utf-8")
    return path
