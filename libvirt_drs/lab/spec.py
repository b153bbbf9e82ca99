"""What a lab should look like: pure parsing of the `drs lab up` options (no I/O)."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path

from libvirt_drs.errors import UserError

STORAGE_MODES = ("shared", "per-host")
DEFAULT_BURN_PCT = (20, 20, 15, 15, 10, 10)  # 90 % of one core in total: a clear hot spot
DEFAULT_MEM_MIB = 256
DEFAULT_TOUCH_MIB = 64
DEFAULT_DIRTY_MIB_S = 4
DEFAULT_BASE_ADDRESS = "127.0.0.11"
LIBVIRT_TCP_PORT = 16509
LIBVIRT_TLS_PORT = 16514
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")


@dataclass(frozen=True)
class VmSpec:
    name: str
    host: str  # the home host: where `up` starts it and `reset_placement` returns it
    burn_pct: int
    mem_mib: int
    touch_mib: int
    dirty_mib_s: int
    disk_mib: int
    heartbeat_ms: int = 1000


@dataclass(frozen=True)
class LabSpec:
    name: str
    hosts: tuple[str, ...]
    addresses: tuple[str, ...]
    vms: tuple[VmSpec, ...]
    storage: str = "shared"
    host_cpu_cores: float = 1.0
    host_mem_mib: int = 2048
    # libvirtd also listens for TLS (qemu+tls, port 16514) with the certificates in this
    # directory: cacert.pem, and <address>/servercert.pem + serverkey.pem per host
    tls_dir: str = ""

    def address(self, host: str) -> str:
        return self.addresses[self.hosts.index(host)]

    def uri(self, host: str) -> str:
        return host_uri(self.address(host))


def host_uri(address: str) -> str:
    return f"qemu+tcp://{address}/system"


def host_names(n_hosts: int) -> tuple[str, ...]:
    return tuple(f"h{i + 1}" for i in range(n_hosts))


def vm_names(n_vms: int) -> tuple[str, ...]:
    return tuple(f"vm{i + 1}" for i in range(n_vms))


def check_name(name: str) -> str:
    if not _NAME_RE.match(name):
        raise UserError(f"lab name {name!r}: expected 1-32 characters a-z 0-9 _ - "
                        "starting with a letter or digit")
    return name


def addresses(base: str, n_hosts: int) -> tuple[str, ...]:
    """Consecutive loopback addresses from `base` (127.0.0.11 -> .11, .12, ...)."""
    try:
        first = ipaddress.IPv4Address(base)
    except ValueError:
        raise UserError(f"--base-address {base!r}: expected an IPv4 address such as 127.0.0.11") \
            from None
    last = first + (n_hosts - 1)
    loopback = ipaddress.IPv4Network("127.0.0.0/8")
    if first not in loopback or last not in loopback or int(first) & 0xFF == 0 \
            or (int(first) & 0xFFFFFF00) != (int(last) & 0xFFFFFF00) or int(last) & 0xFF == 255:
        raise UserError(f"--base-address {base}: {n_hosts} hosts need {n_hosts} consecutive "
                        "127.x.y.1-254 addresses")
    return tuple(str(first + i) for i in range(n_hosts))


def per_vm(option: str, text: str | None, n_vms: int, default: tuple[int, ...] | int,
           lo: int, hi: int) -> tuple[int, ...]:
    """One value for all VMs ("15") or one per VM ("30,20,10"); a short list repeats cyclically."""
    if text is None or text == "":
        values = [default] if isinstance(default, int) else list(default)
    else:
        try:
            values = [int(v) for v in text.split(",")]
        except ValueError:
            raise UserError(f"{option} {text!r}: expected an integer or a comma-separated list") \
                from None
    for v in values:
        if not lo <= v <= hi:
            raise UserError(f"{option} {text!r}: every value must be in {lo}..{hi}")
    return tuple(values[i % len(values)] for i in range(n_vms))


def placement(text: str, hosts: tuple[str, ...], n_vms: int) -> tuple[str, ...]:
    """The home host of each VM.

    `skewed`: all on the first host; `even`: round robin; otherwise a comma-separated
    list with one host per VM, as a name (h2) or a 1-based number (2).
    """
    if text == "skewed":
        return tuple(hosts[0] for _ in range(n_vms))
    if text == "even":
        return tuple(hosts[i % len(hosts)] for i in range(n_vms))
    items = [t.strip() for t in text.split(",") if t.strip()]
    if len(items) != n_vms:
        raise UserError(f"--placement {text!r}: expected skewed, even or {n_vms} comma-separated "
                        f"hosts (one per VM), got {len(items)}")
    result = []
    for item in items:
        if item in hosts:
            result.append(item)
        elif item.isdigit() and 1 <= int(item) <= len(hosts):
            result.append(hosts[int(item) - 1])
        else:
            raise UserError(f"--placement {text!r}: unknown host {item!r} (hosts are "
                            f"{', '.join(hosts)} or 1..{len(hosts)})")
    return tuple(result)


def build(name: str = "lab", n_hosts: int = 3, n_vms: int = 6, placement_text: str = "skewed",
          burn: str | None = None, mem: str | None = None, touch: str | None = None,
          dirty_mib_s: int = DEFAULT_DIRTY_MIB_S, disk_mib: int = 0, storage: str = "shared",
          base_address: str = DEFAULT_BASE_ADDRESS, host_cpu_cores: float = 1.0,
          host_mem_mib: int | None = None, heartbeat_ms: int = 1000,
          tls_dir: str = "") -> LabSpec:
    """Validate the `lab up` options into a LabSpec (raises UserError with the option name)."""
    check_name(name)
    if not 1 <= n_hosts <= 32:
        raise UserError(f"--hosts {n_hosts}: expected 1..32")
    if not 0 <= n_vms <= 64:
        raise UserError(f"--vms {n_vms}: expected 0..64")
    if storage not in STORAGE_MODES:
        raise UserError(f"--storage {storage!r}: expected one of {', '.join(STORAGE_MODES)}")
    if disk_mib < 0 or dirty_mib_s < 0:
        raise UserError("--disk-mib and --dirty-mib-s must be >= 0")
    if not 50 <= heartbeat_ms <= 10_000:
        raise UserError(f"heartbeat period {heartbeat_ms} ms: expected 50..10000")
    if host_cpu_cores <= 0:
        raise UserError(f"--host-cpu-cores {host_cpu_cores}: expected a number > 0")
    hosts = host_names(n_hosts)
    homes = placement(placement_text, hosts, n_vms)
    burns = per_vm("--burn", burn, n_vms, DEFAULT_BURN_PCT, 0, 100)
    mems = per_vm("--mem-mib", mem, n_vms, DEFAULT_MEM_MIB, 96, 4096)
    touches = per_vm("--touch-mib", touch, n_vms, DEFAULT_TOUCH_MIB, 0, 4096)
    for vm, (m, t) in enumerate(zip(mems, touches, strict=True)):
        if t > m - 64:
            raise UserError(f"--touch-mib: vm{vm + 1} touches {t} MiB of {m} MiB; leave at least "
                            "64 MiB for the guest kernel")
    vms = tuple(VmSpec(name=n, host=h, burn_pct=b, mem_mib=m, touch_mib=t,
                       dirty_mib_s=dirty_mib_s, disk_mib=disk_mib, heartbeat_ms=heartbeat_ms)
                for n, h, b, m, t in zip(vm_names(n_vms), homes, burns, mems, touches, strict=True))
    if host_mem_mib is None:
        # Sized so the skewed host (all guests) sits at 75 % memory load: clearly loaded,
        # yet every guest fits on any one host.
        host_mem_mib = max(1024, (sum(mems) * 4 // 3 + 255) // 256 * 256)
    if host_mem_mib <= 0:
        raise UserError(f"--host-mem-mib {host_mem_mib}: expected an integer > 0")
    if tls_dir:
        check_tls_dir(tls_dir, addresses(base_address, n_hosts))
    return LabSpec(name=name, hosts=hosts, addresses=addresses(base_address, n_hosts), vms=vms,
                   storage=storage, host_cpu_cores=host_cpu_cores, host_mem_mib=host_mem_mib,
                   tls_dir=str(Path(tls_dir).resolve()) if tls_dir else "")


TLS_SERVER_FILES = ("servercert.pem", "serverkey.pem")


def check_tls_dir(tls_dir: str, host_addresses: tuple[str, ...]) -> None:
    """--tls-dir must hold cacert.pem and each host's server certificate and key."""
    root = Path(tls_dir)
    missing = [str(root / "cacert.pem")] if not (root / "cacert.pem").is_file() else []
    missing += [str(root / a / f) for a in host_addresses for f in TLS_SERVER_FILES
                if not (root / a / f).is_file()]
    if missing:
        raise UserError(f"--tls-dir {tls_dir}: missing {', '.join(missing[:3])}"
                        + (f" and {len(missing) - 3} more" if len(missing) > 3 else ""))
