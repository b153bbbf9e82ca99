"""One TOML file, parsed once into frozen typed objects (see deploy/drs.example.toml).

Every bad value raises ConfigError naming the file, the key and what is expected.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from balancer.model import GroupRule, Rules, VmHostRule  # the core's own rule types
from drs.errors import ConfigError

DEFAULT_CONFIG_PATH = "drs.toml"
CONFIG_ENV = "DRS_CONFIG"
VM_HOST_KINDS = ("must", "must_not", "should", "should_not")
BALANCER_MODES = ("automatic", "manual")


@dataclass(frozen=True)
class HostConfig:
    name: str
    uri: str
    cpu_cores: float | None = None  # capacity override; None = what libvirt reports
    mem_mib: int | None = None  # capacity override; None = what libvirt reports
    group: str = "default"  # site or host group (evacuate --group)
    storage_group: str = "default"  # hosts sharing storage (no copy-storage needed)
    max_outgoing: int | None = None  # per-host override of migrator.max_outgoing_per_host
    max_incoming: int | None = None  # per-host override of migrator.max_incoming_per_host


@dataclass(frozen=True)
class BalancerConfig:
    mode: str = "manual"
    aggressiveness: int = 3
    interval_s: float = 300.0
    cpu_weight: float = 1.0
    mem_weight: float = 1.0
    window_s: float = 14400.0  # demand estimation window (docs/balancer.md)
    max_moves_per_pass: int = 16
    max_moves_per_host: int = 2
    cpu_overcommit_ratio: float = 4.0
    mem_reserve_mib: int = 0
    cooldown_s: float = 3600.0


@dataclass(frozen=True)
class CollectorConfig:
    interval_s: float = 20.0
    timeout_s: float = 10.0
    raw_retention_days: float = 7.0
    rollup_retention_days: float = 90.0


@dataclass(frozen=True)
class MigratorConfig:
    max_outgoing_per_host: int = 2
    max_incoming_per_host: int = 2
    max_cluster: int = 8
    bandwidth_mib_s: int = 0  # 0 = unlimited
    max_downtime_ms: int = 300
    timeout_s: float = 600.0
    stall_timeout_s: float = 60.0
    copy_storage: bool = False
    auto_converge: bool = True
    postcopy_after_iterations: int = 0  # 0 = never switch to post-copy
    compression: bool = False


@dataclass(frozen=True)
class ServiceConfig:
    metrics_listen: str = "127.0.0.1:9177"
    lease_s: float = 30.0
    retention_interval_s: float = 3600.0
    shutdown_grace_s: float = 60.0

    @property
    def metrics_host(self) -> str:
        return self.metrics_listen.rsplit(":", 1)[0].strip("[]")

    @property
    def metrics_port(self) -> int:
        return int(self.metrics_listen.rsplit(":", 1)[1])


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


def _positive(v: float) -> bool:
    return v > 0


def _non_negative(v: float) -> bool:
    return v >= 0


def _name_ok(v: str) -> bool:
    return bool(v.strip()) and all(c.isprintable() for c in v) and len(v) <= 255


def _listen_ok(v: str) -> bool:
    host, sep, port = v.rpartition(":")
    return bool(sep) and bool(host) and port.isdigit() and 0 < int(port) < 65536


def _hosts(path: str, raw: list[Mapping[str, Any]]) -> tuple[HostConfig, ...]:
    hosts: list[HostConfig] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        s = _Section(path, f"hosts[{i}]", item)
        name = s.require("name", "str")
        if not _name_ok(name):
            raise s.fail("name", "expected a printable name of at most 255 characters")
        if name in seen:
            raise s.fail("name", f"duplicate host name {name!r}")
        seen.add(name)
        uri = s.require("uri", "str")
        if "://" not in uri and ":///" not in uri:
            raise s.fail("uri", f"expected a libvirt URI such as qemu+tcp://host/system, got {uri!r}")
        host = HostConfig(
            name=name,
            uri=uri,
            cpu_cores=s.get("cpu_cores", "float", None, _positive, "a number > 0"),
            mem_mib=s.get("mem_mib", "int", None, _positive, "an integer > 0"),
            group=s.get("group", "str", "default", _name_ok, "a non-empty name"),
            storage_group=s.get("storage_group", "str", "default", _name_ok, "a non-empty name"),
            max_outgoing=s.get("max_outgoing", "int", None, _positive, "an integer >= 1"),
            max_incoming=s.get("max_incoming", "int", None, _positive, "an integer >= 1"),
        )
        s.finish()
        hosts.append(host)
    return tuple(hosts)


def _balancer(s: _Section) -> BalancerConfig:
    d = BalancerConfig()
    cfg = BalancerConfig(
        mode=s.get("mode", "str", d.mode, lambda v: v in BALANCER_MODES, "'automatic' or 'manual'"),
        aggressiveness=s.get("aggressiveness", "int", d.aggressiveness, lambda v: 1 <= v <= 5,
                             "an integer from 1 to 5"),
        interval_s=s.get("interval_s", "float", d.interval_s, _positive, "a number of seconds > 0"),
        cpu_weight=s.get("cpu_weight", "float", d.cpu_weight, _non_negative, "a number >= 0"),
        mem_weight=s.get("mem_weight", "float", d.mem_weight, _non_negative, "a number >= 0"),
        window_s=s.get("window_s", "float", d.window_s, _positive, "a number of seconds > 0"),
        max_moves_per_pass=s.get("max_moves_per_pass", "int", d.max_moves_per_pass,
                                 _non_negative, "an integer >= 0"),
        max_moves_per_host=s.get("max_moves_per_host", "int", d.max_moves_per_host, _positive,
                                 "an integer >= 1"),
        cpu_overcommit_ratio=s.get("cpu_overcommit_ratio", "float", d.cpu_overcommit_ratio,
                                   _positive, "a number > 0"),
        mem_reserve_mib=s.get("mem_reserve_mib", "int", d.mem_reserve_mib, _non_negative,
                              "an integer >= 0"),
        cooldown_s=s.get("cooldown_s", "float", d.cooldown_s, _non_negative, "a number >= 0"),
    )
    if cfg.cpu_weight + cfg.mem_weight <= 0:
        raise s.fail("cpu_weight", "cpu_weight + mem_weight must be > 0")
    return cfg


def _collector(s: _Section) -> CollectorConfig:
    d = CollectorConfig()
    cfg = CollectorConfig(
        interval_s=s.get("interval_s", "float", d.interval_s, _positive, "a number of seconds > 0"),
        timeout_s=s.get("timeout_s", "float", d.timeout_s, _positive, "a number of seconds > 0"),
        raw_retention_days=s.get("raw_retention_days", "float", d.raw_retention_days, _positive,
                                 "a number of days > 0"),
        rollup_retention_days=s.get("rollup_retention_days", "float", d.rollup_retention_days,
                                    _positive, "a number of days > 0"),
    )
    if cfg.timeout_s >= cfg.interval_s:
        raise s.fail("timeout_s", f"expected a number of seconds < interval_s ({cfg.interval_s:g}), "
                                  "so a hung host cannot delay the next cycle")
    if cfg.rollup_retention_days < cfg.raw_retention_days:
        raise s.fail("rollup_retention_days", "expected a number >= raw_retention_days")
    return cfg


def _migrator(s: _Section) -> MigratorConfig:
    d = MigratorConfig()
    return MigratorConfig(
        max_outgoing_per_host=s.get("max_outgoing_per_host", "int", d.max_outgoing_per_host,
                                    _positive, "an integer >= 1"),
        max_incoming_per_host=s.get("max_incoming_per_host", "int", d.max_incoming_per_host,
                                    _positive, "an integer >= 1"),
        max_cluster=s.get("max_cluster", "int", d.max_cluster, _positive, "an integer >= 1"),
        bandwidth_mib_s=s.get("bandwidth_mib_s", "int", d.bandwidth_mib_s, _non_negative,
                              "an integer >= 0 (0 = unlimited)"),
        max_downtime_ms=s.get("max_downtime_ms", "int", d.max_downtime_ms, _positive,
                              "an integer >= 1"),
        timeout_s=s.get("timeout_s", "float", d.timeout_s, _positive, "a number of seconds > 0"),
        stall_timeout_s=s.get("stall_timeout_s", "float", d.stall_timeout_s, _positive,
                              "a number of seconds > 0"),
        copy_storage=s.get("copy_storage", "bool", d.copy_storage),
        auto_converge=s.get("auto_converge", "bool", d.auto_converge),
        postcopy_after_iterations=s.get("postcopy_after_iterations", "int",
                                        d.postcopy_after_iterations, _non_negative,
                                        "an integer >= 0 (0 = never)"),
        compression=s.get("compression", "bool", d.compression),
    )


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


def _service(s: _Section) -> ServiceConfig:
    d = ServiceConfig()
    return ServiceConfig(
        metrics_listen=s.get("metrics_listen", "str", d.metrics_listen, _listen_ok,
                             "an address:port such as 127.0.0.1:9177"),
        lease_s=s.get("lease_s", "float", d.lease_s, _positive, "a number of seconds > 0"),
        retention_interval_s=s.get("retention_interval_s", "float", d.retention_interval_s,
                                   _positive, "a number of seconds > 0"),
        shutdown_grace_s=s.get("shutdown_grace_s", "float", d.shutdown_grace_s, _non_negative,
                               "a number of seconds >= 0"),
    )


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
    for name, build in (("balancer", _balancer), ("collector", _collector),
                        ("migrator", _migrator), ("rules", _rules), ("service", _service)):
        sec = _Section(path, name, top.get(name, "table", {}))
        sections[name] = build(sec)
        sec.finish()
    top.finish()
    _check_rule_hosts(path, hosts, sections["rules"])
    return Config(path=path, database_url=_resolve_sqlite(url, path), hosts=hosts, **sections)


def _resolve_sqlite(url: str, path: str) -> str:
    """A relative SQLite path is relative to the config file, not to the working directory."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and url != prefix + ":memory:":
        rel = url[len(prefix):]
        return prefix + str(Path(path).resolve().parent / rel)
    return url


def config_path(explicit: str | None) -> str:
    """--config wins over DRS_CONFIG, which wins over ./drs.toml."""
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
