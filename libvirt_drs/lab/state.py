"""Where a lab lives on disk, and its JSON state file (pids, dirs, addresses, guests)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from libvirt_drs.errors import UserError

ROOT_ENV = "DRS_LAB_ROOT"
DEFAULT_ROOT = "/var/tmp/drs-lab"
STATE_FILE = "state.json"
# Per-host directories bind-mounted over these paths inside the host's mount namespace.
BIND_TARGETS = {
    "etc": "/etc/libvirt",
    "run": "/run/libvirt",
    "lib": "/var/lib/libvirt",
    "cache": "/var/cache/libvirt",
    "log": "/var/log/libvirt",
}


def root_dir() -> Path:
    return Path(os.environ.get(ROOT_ENV) or DEFAULT_ROOT)


def lab_dir(name: str) -> Path:
    return root_dir() / name


@dataclass
class LabHost:
    name: str
    address: str
    uri: str
    host_uuid: str
    dir: str  # per-host directory holding etc/ run/ lib/ cache/ log/
    pid: int = 0  # libvirtd, exec'ed by unshare: it is also the namespace holder
    mnt_ns: str = ""  # readlink /proc/<pid>/ns/mnt, to find every process of the namespace
    images_dir: str = ""  # where this host sees guest disks (same path on every host)
    past_mnt_ns: list[str] = field(default_factory=list)  # of killed libvirtds (guests may live on)
    tls_dir: str = ""  # also listen for TLS with these certificates (spec.LabSpec.tls_dir)

    def sub(self, key: str) -> Path:
        return Path(self.dir) / key

    def outside(self, inside_path: str) -> Path:
        """The path, seen from outside the namespace, of a path under a bind-mounted dir."""
        for key, target in BIND_TARGETS.items():
            if inside_path == target or inside_path.startswith(target + "/"):
                return self.sub(key) / inside_path[len(target):].lstrip("/")
        return Path(inside_path)


@dataclass
class LabVm:
    name: str
    host: str  # home host
    burn_pct: int
    mem_mib: int
    touch_mib: int
    dirty_mib_s: int
    disk_mib: int
    uuid: str
    serial_log: str
    disk_path: str = ""  # path as the guest's host sees it ("" = no data disk)
    xml: str = ""
    heartbeat_ms: int = 1000


@dataclass
class LabState:
    name: str
    dir: str
    storage: str
    host_cpu_cores: float
    host_mem_mib: int
    kernel: str
    initrd: str
    hosts: list[LabHost] = field(default_factory=list)
    vms: list[LabVm] = field(default_factory=list)
    config_out: str = ""
    created_at: float = 0.0
    up_wall_s: float = 0.0
    phase_s: dict[str, float] = field(default_factory=dict)  # seconds since `up` began

    @property
    def path(self) -> Path:
        return Path(self.dir) / STATE_FILE

    def host(self, name: str) -> LabHost:
        for h in self.hosts:
            if h.name == name:
                return h
        raise UserError(f"lab {self.name}: no host named {name!r}")

    def vm(self, name: str) -> LabVm:
        for v in self.vms:
            if v.name == name:
                return v
        raise UserError(f"lab {self.name}: no VM named {name!r}")

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, self.path)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabState:
        data = dict(data)
        hosts = [LabHost(**h) for h in data.pop("hosts", [])]
        vms = [LabVm(**v) for v in data.pop("vms", [])]
        return cls(hosts=hosts, vms=vms, **data)


def load(name: str) -> LabState | None:
    """The saved state of lab `name`, or None if there is no such lab."""
    path = lab_dir(name) / STATE_FILE
    try:
        return LabState.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return None
    except (ValueError, TypeError) as exc:
        raise UserError(f"{path}: unreadable lab state ({exc}); remove the directory by hand "
                        "after checking no lab process runs") from None


def names() -> list[str]:
    root = root_dir()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / STATE_FILE).is_file())
