"""Starting labs in a pool of address blocks, so parallel test sessions never collide."""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path
from typing import Any

from libvirt_drs.lab import host, state
from libvirt_drs.lab.lab import Lab, LabExists
from libvirt_drs.lab.spec import build

log = logging.getLogger(__name__)


def stale(name: str) -> bool:
    """A lab whose every libvirtd is gone (its session was killed, or the machine rebooted
    and its pids now belong to other processes): safe to take down."""
    st = state.load(name)
    return st is not None and not any(host.daemon_pid(h) for h in st.hosts)


def up_in_pool(prefix: str, first: str, blocks: int = 15, step: int = 10,
               config_dir: Path | None = None, **build_kwargs: Any) -> Lab:
    """Start a lab named <prefix>-<last octet> at the first free block of addresses
    (first, first + step, ...). A block is free when no lab uses its name and nothing
    listens on its addresses; stale labs of the pool are taken down and reused. The
    lab directory's creation decides races between sessions."""
    base = ipaddress.IPv4Address(first)
    n_hosts = int(build_kwargs.get("n_hosts", 3))
    tried = []
    for k in range(blocks):
        addr = base + k * step
        name = f"{prefix}-{int(addr) & 0xFF}"
        tried.append(name)
        if stale(name):
            log.warning("lab %s: taking down the leftover of a killed session", name)
            Lab.load(name).down()
        if state.lab_dir(name).exists():
            continue
        if any(host.address_in_use(str(addr + i)) for i in range(n_hosts)):
            continue
        config = (config_dir / f"{name}.toml") if config_dir else None
        try:
            return Lab.up(build(name=name, base_address=str(addr), **build_kwargs),
                          config_out_path=config)
        except LabExists:
            continue
    raise LabExists(f"no free lab address block among {', '.join(tried)}")
