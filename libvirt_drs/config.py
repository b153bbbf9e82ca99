"""One TOML file, parsed once into frozen typed objects (see deploy/drs.example.toml).

Every setting is declared once, as a dataclass field whose metadata says where it lives
and what it accepts: `section` (the TOML table; the key is the field's name), the bounds
`gt`, `ge`, `le`, `choices`, or a `check` with its `expected` text, a `unit` and a `note`
for the messages, `toml` when the TOML type differs from the field's, and `from` for a
field that takes a setting declared elsewhere. The parts declare their own settings
(balancer.model.Policy, migrator.model.MigrationOptions, migrator.admission.Limits); the
settings only the wiring uses are declared here. A field without metadata is not a
setting. A declaring class may add `invalid()` for settings that contradict each other.

Every bad value raises ConfigError naming the file, the key and what is expected.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field
from pathlib import Path
from typing import Any, TypeVar, get_args, get_origin, get_type_hints

from libvirt_drs.balancer.model import GroupRule, Policy, Rules, VmHostRule  # the core's own types
from libvirt_drs.errors import ConfigError
from libvirt_drs.migrator.admission import Limits
from libvirt_drs.migrator.model import MigrationOptions
from libvirt_drs.windows import WINDOW_EXPECTED, Window, parse_window, zone

DEFAULT_CONFIG_PATH = "/etc/drs/drs.toml"
CONFIG_ENV = "DRS_CONFIG"
VM_HOST_KINDS = ("must", "must_not", "should", "should_not")
BALANCER_MODES = ("automatic", "manual")
LISTEN_EXPECTED = "an address:port such as 127.0.0.1:9177"


def _name_ok(v: str) -> bool:
    return bool(v.strip()) and all(c.isprintable() for c in v) and len(v) <= 255


# libvirt's drivers and remote transports (libvirt.org/uri.html): a scheme outside these
# is a typo such as qemu+tpc, caught here instead of at the first connection
LIBVIRT_DRIVERS = ("qemu", "test", "xen", "libxl", "lxc", "vbox", "vmware", "vmwareplayer",
                   "vmwarews", "vmwarefusion", "esx", "gsx", "vpx", "hyperv", "ch", "bhyve",
                   "openvz", "vz", "remote")
LIBVIRT_TRANSPORTS = ("tcp", "tls", "ssh", "unix", "ext", "libssh", "libssh2")
URI_EXPECTED = (f"a libvirt URI such as qemu+ssh://host/system (driver: "
                f"{', '.join(LIBVIRT_DRIVERS[:4])}, ...; transport: {', '.join(LIBVIRT_TRANSPORTS)})")


def _uri_ok(v: str) -> bool:
    scheme, sep, _rest = v.partition("://")
    if not sep:
        return False
    driver, plus, transport = scheme.partition("+")
    return driver in LIBVIRT_DRIVERS and (not plus or transport in LIBVIRT_TRANSPORTS)


def _windows_ok(v: list[Any]) -> bool:
    return all(isinstance(w, str) and parse_window(w) is not None for w in v)


def _zone_ok(v: str) -> bool:
    return zone(v) is not None


def listen_ok(v: str) -> bool:
    """ADDR:PORT with a port from 1 to 65535 (service.metrics_listen, --metrics-listen)."""
    host, sep, port = v.rpartition(":")
    return bool(sep) and bool(host) and port.isdigit() and 0 < int(port) < 65536


_NAME = {"check": _name_ok, "expected": "a non-empty name"}


@dataclass(frozen=True)
class HostConfig:
    name: str = field(metadata={"section": "hosts", "check": _name_ok,
                                "expected": "a printable name of at most 255 characters"})
    uri: str = field(metadata={"section": "hosts", "check": _uri_ok, "expected": URI_EXPECTED})
    # capacity overrides; None = what libvirt reports
    cpu_cores: float | None = field(default=None, metadata={"section": "hosts", "gt": 0})
    mem_mib: int | None = field(default=None, metadata={"section": "hosts", "gt": 0,
                                                        "unit": "MiB"})
    # site or host group (evacuate --group)
    group: str = field(default="default", metadata={"section": "hosts", **_NAME})
    # hosts sharing storage (no copy-storage needed)
    storage_group: str = field(default="default", metadata={"section": "hosts", **_NAME})
    # free-form labels (ssd, gpu, rack-3): initial placement can ask for hosts with them
    labels: tuple[str, ...] = field(default=(), metadata={
        "section": "hosts", "toml": "list",
        "check": lambda v: all(isinstance(x, str) and _name_ok(x) for x in v),
        "expected": "a list of non-empty printable names"})
    # HA: an executable and its arguments that power the host off; exit 0 = it is off
    # (e.g. ["fence_ipmilan", "--ip", "10.0.0.11", "--username", "admin", ...,
    # "--action", "off"]). Without one, the host's VMs are never restarted elsewhere.
    fence_command: tuple[str, ...] = field(default=(), metadata={
        "section": "hosts", "toml": "list",
        "check": lambda v: all(isinstance(x, str) and x for x in v),
        "expected": "a list of non-empty strings: the command and its arguments"})
    # HA: may VMs of a failed host be restarted here
    ha_target: bool = field(default=True, metadata={"section": "hosts"})
    # per-host overrides of migrator.max_outgoing_per_host / max_incoming_per_host
    max_outgoing: int | None = field(default=None, metadata={"section": "hosts", "ge": 1})
    max_incoming: int | None = field(default=None, metadata={"section": "hosts", "ge": 1})


@dataclass(frozen=True)
class BalancerConfig:
    """[balancer]: whether and how often the service plans, the demand window, and the
    planner's Policy (whose settings, also in [balancer], Policy declares)."""

    mode: str = field(default="manual", metadata={"section": "balancer",
                                                  "choices": BALANCER_MODES})
    interval_s: float = field(default=300.0, metadata={"section": "balancer", "gt": 0,
                                                       "unit": "seconds"})
    # demand estimation window (docs/balancer.md)
    window_s: float = field(default=14400.0, metadata={"section": "balancer", "gt": 0,
                                                       "unit": "seconds"})
    # when automatic mode may carry out balancing moves (libvirt_drs.windows); empty: always.
    # Mandatory moves (maintenance, rule violations) are never held back.
    windows: tuple[str, ...] = field(default=(), metadata={
        "section": "balancer", "toml": "list", "check": _windows_ok,
        "expected": f"a list of windows, each {WINDOW_EXPECTED}"})
    # the windows' time zone (IANA name); empty: this machine's local zone
    timezone: str = field(default="", metadata={
        "section": "balancer", "check": _zone_ok,
        "expected": "an IANA time zone such as Europe/Berlin, or \"\" for the local zone"})
    policy: Policy = field(default_factory=Policy)

    def balancing_windows(self) -> tuple[Window, ...]:
        return tuple(w for w in (parse_window(t) for t in self.windows) if w is not None)


@dataclass(frozen=True)
class CollectorConfig:
    interval_s: float = field(default=20.0, metadata={"section": "collector", "gt": 0,
                                                      "unit": "seconds"})
    timeout_s: float = field(default=10.0, metadata={"section": "collector", "gt": 0,
                                                     "unit": "seconds"})
    raw_retention_days: float = field(default=7.0, metadata={"section": "collector", "gt": 0,
                                                             "unit": "days"})
    rollup_retention_days: float = field(default=90.0, metadata={
        "section": "collector", "gt": 0, "unit": "days"})

    def invalid(self) -> tuple[str, str] | None:
        if self.timeout_s >= self.interval_s:
            return "timeout_s", (f"expected a number of seconds < interval_s "
                                 f"({self.interval_s:g}), so a hung host cannot delay the "
                                 "next cycle")
        if self.rollup_retention_days < self.raw_retention_days:
            return "rollup_retention_days", "expected a number >= raw_retention_days"
        return None


@dataclass(frozen=True)
class MigratorConfig:
    """[migrator]: the admission limits and the libvirt options (each declared by the
    migrator), and copy_storage."""

    # copy the disks when the hosts' storage groups are unknown; the planner may move VMs
    # across storage groups
    copy_storage: bool = field(default=False, metadata={"section": "migrator"})
    limits: Limits = field(default_factory=Limits)  # with the [[hosts]] overrides
    options: MigrationOptions = field(default_factory=MigrationOptions)


@dataclass(frozen=True)
class ServiceConfig:
    metrics_listen: str = field(default="127.0.0.1:9177", metadata={
        "section": "service", "check": listen_ok, "expected": LISTEN_EXPECTED})
    lease_s: float = field(default=30.0, metadata={"section": "service", "gt": 0,
                                                   "unit": "seconds"})
    retention_interval_s: float = field(default=3600.0, metadata={
        "section": "service", "gt": 0, "unit": "seconds"})
    shutdown_grace_s: float = field(default=60.0, metadata={"section": "service", "ge": 0,
                                                            "unit": "seconds"})

    @property
    def metrics_host(self) -> str:
        return self.metrics_listen.rsplit(":", 1)[0].strip("[]")

    @property
    def metrics_port(self) -> int:
        return int(self.metrics_listen.rsplit(":", 1)[1])


HA_PRIORITIES = ("high", "medium", "low")


@dataclass(frozen=True)
class HaGroup:
    """VMs restarted elsewhere when their host fails: highest priority first, then `order`
    (lower first) within a priority."""

    name: str
    vms: tuple[str, ...]
    priority: str = "medium"
    order: int = 0


@dataclass(frozen=True)
class HaConfig:
    """[ha] and its [[ha.groups]]: restart the protected VMs of a failed host, after it is
    fenced (libvirt_drs/ha)."""

    enabled: bool = field(default=False, metadata={"section": "ha"})
    # collector intervals without a successful poll before a host is suspected and fenced
    failure_intervals: int = field(default=3, metadata={"section": "ha", "ge": 1})
    fence_timeout_s: float = field(default=60.0, metadata={"section": "ha", "gt": 0,
                                                           "unit": "seconds"})
    groups: tuple[HaGroup, ...] = ()

    def group_of(self, vm: str) -> HaGroup | None:
        return next((g for g in self.groups if vm in g.vms), None)


@dataclass(frozen=True)
class ProtectionPolicy:
    """VMs replicated from the primary site (a host group) to the recovery site, whose
    recovery point may be at most rpo_s old (libvirt_drs/replication)."""

    name: str
    vms: tuple[str, ...]
    primary: str  # host group the VMs run in
    recovery: str  # host group holding the replicas (and running the VMs after failover)
    recovery_dir: str  # on the recovery hosts: a libvirt dir pool of the replicas
    rpo_s: float = 60.0
    # failover start order, as [[ha.groups]]: high first, then lower `order`, then as listed
    priority: str = "medium"
    order: int = 0


@dataclass(frozen=True)
class ReplicationConfig:
    """[replication] and its [[replication.policies]]."""

    # the leading drs serve replicates each protected VM every half RPO (as drs replicate)
    enabled: bool = field(default=False, metadata={"section": "replication"})
    # TCP port of the NBD export a primary host opens for each backup it serves
    nbd_port: int = field(default=10809, metadata={"section": "replication", "ge": 1,
                                                   "le": 65535})
    # per VM transfer cap; 0 = uncapped
    bandwidth_mib_s: float = field(default=0.0, metadata={"section": "replication", "ge": 0,
                                                          "unit": "MiB/s"})
    policies: tuple[ProtectionPolicy, ...] = ()

    def policy_of(self, vm: str) -> ProtectionPolicy | None:
        return next((p for p in self.policies if vm in p.vms), None)


def _file_or_empty(v: str) -> bool:
    return v == "" or Path(v).is_file()


@dataclass(frozen=True)
class WebConfig:
    """[web]: the REST API and the web console, served by `drs serve`."""

    # where the console and /api/v1 listen; "" = not served
    listen: str = field(default="127.0.0.1:8080", metadata={
        "section": "web", "check": lambda v: v == "" or listen_ok(v),
        "expected": f"{LISTEN_EXPECTED.replace('9177', '8080')}, or \"\" for no console"})
    # HTTPS: both or neither (PEM files; the key readable by the drs user only)
    tls_cert: str = field(default="", metadata={
        "section": "web", "check": _file_or_empty, "expected": "an existing PEM file"})
    tls_key: str = field(default="", metadata={
        "section": "web", "check": _file_or_empty, "expected": "an existing PEM file"})
    # a console login lasts this long
    session_ttl_s: float = field(default=43200.0, metadata={
        "section": "web", "gt": 0, "unit": "seconds"})

    def invalid(self) -> tuple[str, str] | None:
        if bool(self.tls_cert) != bool(self.tls_key):
            return ("tls_key" if self.tls_cert else "tls_cert",
                    "expected tls_cert and tls_key together (HTTPS needs both)")
        return None

    @property
    def host(self) -> str:
        return self.listen.rsplit(":", 1)[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rsplit(":", 1)[1])

    @property
    def url(self) -> str:
        return f"{'https' if self.tls_cert else 'http'}://{self.listen}/"


@dataclass(frozen=True)
class Config:
    path: str
    database_url: str
    hosts: tuple[HostConfig, ...] = ()
    balancer: BalancerConfig = field(default_factory=BalancerConfig)
    collector: CollectorConfig = field(default_factory=CollectorConfig)
    migrator: MigratorConfig = field(default_factory=MigratorConfig)
    rules: Rules = field(default_factory=Rules)
    service: ServiceConfig = field(default_factory=ServiceConfig)
    web: WebConfig = field(default_factory=WebConfig)
    ha: HaConfig = field(default_factory=HaConfig)
    replication: ReplicationConfig = field(default_factory=ReplicationConfig)

    def host(self, name: str) -> HostConfig | None:
        return next((h for h in self.hosts if h.name == name), None)


T = TypeVar("T")


class _Section:
    """Reads one TOML table, remembering which keys were used so unknown ones are errors."""

    def __init__(self, path: str, prefix: str, data: Any) -> None:
        if not isinstance(data, Mapping):
            raise ConfigError(path, prefix or "<top level>", "expected a table")
        self.path, self.prefix, self.data = path, prefix, data
        self.used: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def fail(self, name: str, expected: str) -> ConfigError:
        return ConfigError(self.path, self.key(name), expected)

    def get(self, name: str, kind: str, default: Any, check: Callable[[Any], bool] | None = None,
            expected: str = "") -> Any:
        self.used.add(name)
        if name not in self.data:
            return default
        value = self.data[name]
        value = _coerce(value, kind)
        if value is None:
            raise self.fail(name, f"expected {_KIND_TEXT[kind]}, got {type(self.data[name]).__name__}"
                            f" {_short(self.data[name])}")
        if check is not None and not check(value):
            raise self.fail(name, f"expected {expected}, got {_short(value)}")
        return value

    def require(self, name: str, kind: str) -> Any:
        if name not in self.data:
            self.used.add(name)
            raise self.fail(name, f"missing; expected {_KIND_TEXT[kind]}")
        value = self.get(name, kind, None)
        if kind == "str" and not value.strip():
            raise self.fail(name, "expected a non-empty string")
        return value

    def names(self, name: str) -> tuple[str, ...]:
        value = self.get(name, "list", [])
        for i, item in enumerate(value):
            if not isinstance(item, str) or not item.strip():
                raise ConfigError(self.path, f"{self.key(name)}[{i}]", "expected a non-empty string")
        return tuple(value)

    def finish(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise self.fail(unknown[0], "unknown key (see deploy/drs.example.toml)")


_KIND_TEXT = {
    "str": "a string", "int": "an integer", "float": "a number", "bool": "true or false",
    "list": "a list", "table": "a table", "tables": "an array of tables",
}
_KINDS: dict[Any, str] = {str: "str", int: "int", float: "float", bool: "bool"}


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _coerce(value: Any, kind: str) -> Any:
    if kind == "bool":
        return value if isinstance(value, bool) else None
    if isinstance(value, bool):
        return None
    if kind == "str":
        return value if isinstance(value, str) else None
    if kind == "int":
        return value if isinstance(value, int) else None
    if kind == "float":
        if isinstance(value, int | float) and value == value and abs(value) != float("inf"):
            return float(value)
        return None
    if kind == "list":
        return value if isinstance(value, list) else None
    if kind == "table":
        return value if isinstance(value, Mapping) else None
    if kind == "tables":
        return value if isinstance(value, list) and all(isinstance(v, Mapping) for v in value) else None
    raise AssertionError(kind)


# --- settings from their declarations -------------------------------------------


def _scalar(hint: Any) -> Any:
    """int for `int` and `int | None`, and so on (a tuple stays a tuple)."""
    if get_origin(hint) is tuple:
        return hint
    args = [a for a in get_args(hint) if a is not type(None)]
    return args[0] if args else hint


def _expected(kind: str, meta: Mapping[str, Any]) -> str:
    if "expected" in meta:
        return str(meta["expected"])
    if "choices" in meta:
        return " or ".join(repr(c) for c in meta["choices"])
    unit = meta.get("unit")
    text = _KIND_TEXT[kind]
    if unit:
        text = f"{'an integer number' if kind == 'int' else 'a number'} of {unit}"
    ge, gt, le = meta.get("ge"), meta.get("gt"), meta.get("le")
    if ge is not None and le is not None:
        text += f" from {ge:g} to {le:g}"
    elif gt is not None:
        text += f" > {gt:g}"
    elif ge is not None:
        text += f" >= {ge:g}"
    elif le is not None:
        text += f" <= {le:g}"
    if "note" in meta:
        text += f" ({meta['note']})"
    return text


def _accepts(meta: Mapping[str, Any]) -> Callable[[Any], bool] | None:
    if not any(k in meta for k in ("check", "choices", "gt", "ge", "le")):
        return None

    def accepts(v: Any) -> bool:
        return (("check" not in meta or bool(meta["check"](v)))
                and ("choices" not in meta or v in meta["choices"])
                and ("gt" not in meta or v > meta["gt"])
                and ("ge" not in meta or v >= meta["ge"])
                and ("le" not in meta or v <= meta["le"]))
    return accepts


def _settings(cls: type[T], section: str, s: _Section, values: dict[str, Any]) -> T:
    """`cls` from TOML table `s` (the [section] table or one of its array entries): each
    field declared for `section` from its key, a nested declaring class from the same
    table, a `from` field from `values` (every setting read so far, by section.key)."""
    hints = get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        hint, meta = _scalar(hints[f.name]), f.metadata
        if dataclasses.is_dataclass(hint):
            kwargs[f.name] = _settings(hint, section, s, values)  # type: ignore[arg-type]
        elif "from" in meta:
            kwargs[f.name] = hint(values[meta["from"]])
        elif "section" in meta:
            assert meta["section"] == section, (cls, f.name, section)
            kind = meta.get("toml") or _KINDS[hint]
            check, expected = _accepts(meta), _expected(kind, meta)
            if f.default is MISSING and f.default_factory is MISSING:
                value = s.require(f.name, kind)
                if check is not None and not check(value):
                    raise s.fail(f.name, f"expected {expected}, got {_short(value)}")
            else:
                value = s.get(f.name, kind, f.default, check, expected)
            kwargs[f.name] = (value if value is None else tuple(value) if kind == "list"
                              else hint(value))
            values[f"{section}.{f.name}"] = kwargs[f.name]
    obj = cls(**kwargs)
    invalid = getattr(obj, "invalid", None)
    problem = invalid() if invalid is not None else None
    if problem is not None:
        raise s.fail(*problem)
    return obj


def settings_dict(obj: Any) -> dict[str, Any]:
    """The settings of a declaring object by key, nested declarations flattened (the
    shape of its TOML table); fields that are not settings are left out."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            out.update(settings_dict(value))
        elif "section" in f.metadata:
            out[f.name] = value
    return out


def as_dict(cfg: Config) -> dict[str, Any]:
    """The whole configuration as drs.toml spells it (`drs config check --json`)."""
    return {"path": cfg.path, "database_url": cfg.database_url,
            "hosts": [{**settings_dict(h), "fence_command": _fence_shown(h.fence_command)}
                      for h in cfg.hosts],
            "balancer": settings_dict(cfg.balancer), "collector": settings_dict(cfg.collector),
            "migrator": settings_dict(cfg.migrator), "rules": dataclasses.asdict(cfg.rules),
            "service": settings_dict(cfg.service), "web": settings_dict(cfg.web),
            "ha": {**settings_dict(cfg.ha), "groups": [dataclasses.asdict(g) for g in cfg.ha.groups]},
            "replication": {**settings_dict(cfg.replication),
                            "policies": [dataclasses.asdict(p) for p in cfg.replication.policies]}}


def _fence_shown(argv: tuple[str, ...]) -> str | None:
    """A fence command's arguments often hold the BMC password: only its program is shown."""
    if not argv:
        return None
    return argv[0] + (f" (+{len(argv) - 1} arguments, not shown)" if len(argv) > 1 else "")


def _hosts(path: str, raw: list[Mapping[str, Any]]) -> tuple[HostConfig, ...]:
    hosts: list[HostConfig] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        s = _Section(path, f"hosts[{i}]", item)
        host = _settings(HostConfig, "hosts", s, {})
        if host.name in seen:
            raise s.fail("name", f"duplicate host name {host.name!r}")
        seen.add(host.name)
        s.finish()
        hosts.append(host)
    return tuple(hosts)


def _with_host_limits(m: MigratorConfig, hosts: tuple[HostConfig, ...]) -> MigratorConfig:
    limits = dataclasses.replace(
        m.limits,
        outgoing_overrides={h.name: h.max_outgoing for h in hosts if h.max_outgoing},
        incoming_overrides={h.name: h.max_incoming for h in hosts if h.max_incoming})
    return dataclasses.replace(m, limits=limits)


def _group_rules(path: str, prefix: str, raw: list[Mapping[str, Any]]) -> tuple[GroupRule, ...]:
    rules = []
    for i, item in enumerate(raw):
        s = _Section(path, f"{prefix}[{i}]", item)
        rule = GroupRule(name=s.get("name", "str", f"{prefix.split('.')[-1]}-{i}"), vms=s.names("vms"))
        if len(rule.vms) < 2:
            raise s.fail("vms", "expected at least two VM names")
        s.finish()
        rules.append(rule)
    return tuple(rules)


def _rules(s: _Section) -> Rules:
    vm_host = []
    for i, item in enumerate(s.get("vm_host", "tables", [])):
        r = _Section(s.path, f"rules.vm_host[{i}]", item)
        rule = VmHostRule(
            name=r.get("name", "str", f"vm_host-{i}"),
            kind=r.get("kind", "str", None, lambda v: v in VM_HOST_KINDS,
                       "one of must, must_not, should, should_not"),
            vms=r.names("vms"),
            hosts=r.names("hosts"),
        )
        if rule.kind is None:
            raise r.fail("kind", "missing; expected one of must, must_not, should, should_not")
        if not rule.vms:
            raise r.fail("vms", "expected at least one VM name")
        if not rule.hosts:
            raise r.fail("hosts", "expected at least one host name")
        r.finish()
        vm_host.append(rule)
    return Rules(
        affinity=_group_rules(s.path, "rules.affinity", s.get("affinity", "tables", [])),
        anti_affinity=_group_rules(s.path, "rules.anti_affinity",
                                   s.get("anti_affinity", "tables", [])),
        vm_host=tuple(vm_host),
        pinned=s.names("pinned"),
        excluded=s.names("excluded"),
    )


def _claim_vms(s: _Section, vms: tuple[str, ...], owner: str, seen: dict[str, str],
               kind: str) -> None:
    """`vms` is not empty and none of them belongs to another `kind` already (in `seen`)."""
    if not vms:
        raise s.fail("vms", "expected at least one VM name")
    for vm in vms:
        if vm in seen:
            raise s.fail("vms", f"{vm!r} is already in {kind} {seen[vm]!r}")
        seen[vm] = owner


def _ha_groups(s: _Section) -> tuple[HaGroup, ...]:
    groups: list[HaGroup] = []
    seen: dict[str, str] = {}
    for i, item in enumerate(s.get("groups", "tables", [])):
        g = _Section(s.path, f"ha.groups[{i}]", item)
        group = HaGroup(
            name=g.get("name", "str", f"group-{i}"), vms=g.names("vms"),
            priority=g.get("priority", "str", "medium", lambda v: v in HA_PRIORITIES,
                           "high, medium or low"),
            order=g.get("order", "int", 0))
        _claim_vms(g, group.vms, group.name, seen, "HA group")
        g.finish()
        groups.append(group)
    return tuple(groups)


def _policies(s: _Section, hosts: tuple[HostConfig, ...]) -> tuple[ProtectionPolicy, ...]:
    groups = sorted({h.group for h in hosts})
    policies: list[ProtectionPolicy] = []
    seen: dict[str, str] = {}
    for i, item in enumerate(s.get("policies", "tables", [])):
        p = _Section(s.path, f"replication.policies[{i}]", item)
        a_group = f"a host group ({', '.join(groups) or 'no hosts configured'})"
        policy = ProtectionPolicy(
            name=p.get("name", "str", f"policy-{i}", _name_ok, "a non-empty name"),
            vms=p.names("vms"),
            primary=p.require("primary", "str"), recovery=p.require("recovery", "str"),
            recovery_dir=p.require("recovery_dir", "str"),
            rpo_s=p.get("rpo_s", "float", 60.0, lambda v: v > 0, "a number > 0 (seconds)"),
            priority=p.get("priority", "str", "medium", lambda v: v in HA_PRIORITIES,
                           "high, medium or low"),
            order=p.get("order", "int", 0))
        for key in ("primary", "recovery"):
            if getattr(policy, key) not in groups:
                raise p.fail(key, f"expected {a_group}, got {getattr(policy, key)!r}")
        if policy.recovery == policy.primary:
            raise p.fail("recovery", f"expected a host group other than the primary "
                         f"{policy.primary!r} (a replica on the site it protects survives nothing)")
        if not policy.recovery_dir.startswith("/"):
            raise p.fail("recovery_dir", f"expected an absolute path, got {policy.recovery_dir!r}")
        _claim_vms(p, policy.vms, policy.name, seen, "protection policy")
        p.finish()
        policies.append(policy)
    return tuple(policies)


def _check_ha(path: str, hosts: tuple[HostConfig, ...], ha: HaConfig) -> None:
    """With HA on, every host must be fenceable: a failed host that cannot be fenced never
    has its VMs restarted (they may still run), so the config says it up front."""
    if not ha.enabled:
        return
    for i, h in enumerate(hosts):
        if not h.fence_command:
            raise ConfigError(path, f"hosts[{i}].fence_command",
                              f"ha.enabled: host {h.name!r} needs a fence command (a failed "
                              "host is restarted from only after it is fenced)")


def _check_rule_hosts(path: str, cfg_hosts: tuple[HostConfig, ...], rules: Rules) -> None:
    names = {h.name for h in cfg_hosts}
    for i, rule in enumerate(rules.vm_host):
        for host in rule.hosts:
            if cfg_hosts and host not in names:
                raise ConfigError(path, f"rules.vm_host[{i}].hosts",
                                  f"rule {rule.name!r} names unknown host {host!r}")


def parse(text: str, path: str = DEFAULT_CONFIG_PATH) -> Config:
    """Parse TOML text into a Config; `path` is used for error messages and relative paths."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, "<syntax>", f"invalid TOML ({exc})") from None
    top = _Section(path, "", data)
    db = _Section(path, "database", top.get("database", "table", {}))
    default_db = Path(path).resolve().parent / "drs.sqlite"
    url = db.get("url", "str", f"sqlite:///{default_db}", lambda v: "://" in v or v.startswith("sqlite:"),
                 "a SQLAlchemy URL such as sqlite:///drs.sqlite or postgresql+psycopg://...")
    db.finish()
    hosts = _hosts(path, top.get("hosts", "tables", []))
    sections: dict[str, Any] = {}
    values: dict[str, Any] = {}  # section.key -> value, for the `from` fields
    # [migrator] before [balancer]: the planner's Policy takes two [migrator] settings
    for name, cls in (("collector", CollectorConfig), ("migrator", MigratorConfig),
                      ("balancer", BalancerConfig), ("rules", None), ("service", ServiceConfig),
                      ("web", WebConfig), ("ha", HaConfig), ("replication", ReplicationConfig)):
        sec = _Section(path, name, top.get(name, "table", {}))
        sections[name] = _rules(sec) if cls is None else _settings(cls, name, sec, values)
        if name == "ha":
            sections[name] = dataclasses.replace(sections[name], groups=_ha_groups(sec))
        if name == "replication":
            sections[name] = dataclasses.replace(sections[name], policies=_policies(sec, hosts))
        sec.finish()
    top.finish()
    _check_rule_hosts(path, hosts, sections["rules"])
    _check_ha(path, hosts, sections["ha"])
    sections["migrator"] = _with_host_limits(sections["migrator"], hosts)
    return Config(path=path, database_url=_resolve_sqlite(url, path), hosts=hosts, **sections)


def _resolve_sqlite(url: str, path: str) -> str:
    """A relative SQLite path is relative to the config file, not to the working directory."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and url != prefix + ":memory:":
        rel = url[len(prefix):]
        return prefix + str(Path(path).resolve().parent / rel)
    return url


def config_path(explicit: str | None) -> str:
    """--config wins over DRS_CONFIG, which wins over /etc/drs/drs.toml."""
    return explicit or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH


def load(explicit: str | None = None) -> Config:
    path = config_path(explicit)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(path, "<file>", "not found (pass --config PATH or set DRS_CONFIG)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(path, "<file>", f"cannot read ({exc.__class__.__name__})") from None
    return parse(text, path)
