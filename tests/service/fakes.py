"""A fake cluster for the service: the migrator's FakeHypervisor holds the placement,
and one collectors HostSource per host reads it, with CPU time burning in real time."""

from __future__ import annotations

import time
from dataclasses import dataclass

from libvirt_drs import config
from libvirt_drs.collect import CollectJob
from libvirt_drs.collectors.cycle import CapacityOverride, Collector
from libvirt_drs.collectors.hypervisor import STATE_RUNNING, DomainStats, HostPoll, HostUnavailable, NodeInfo
from libvirt_drs.config import Config
from tests.migrator.fakes import FakeHypervisor


@dataclass
class FakeSource:
    name: str
    hv: FakeHypervisor
    burn: dict[str, float]  # vm -> cores
    t0: float

    def poll(self) -> HostPoll:
        try:
            domains = dict(self.hv.hosts[self.name].domains)
        except KeyError:
            raise HostUnavailable("no such host") from None
        if not self.hv.hosts[self.name].reachable:
            raise HostUnavailable("Connection refused")
        now = time.monotonic()
        stats = tuple(
            DomainStats(uuid=d.uuid, name=d.name, state=STATE_RUNNING, state_reason=1,
                        cpu_time_ns=int(self.burn.get(d.name, 0.0) * (now - self.t0) * 1e9),
                        vcpus=1, mem_max_kib=d.mem_mib * 1024, mem_current_kib=d.mem_mib * 1024,
                        rss_kib=d.mem_mib * 512)
            for d in domains.values())
        return HostPoll(self.name, time.time(), now, NodeInfo(1, 2048, "qemu64", None), stats)

    def close(self) -> None:
        return None


def cluster_config(db_url: str, hosts: int = 3, **sections: str) -> Config:
    text = f'[database]\nurl = "{db_url}"\n'
    for i in range(hosts):
        text += (f'[[hosts]]\nname = "h{i + 1}"\nuri = "test:///h{i + 1}"\ncpu_cores = 1.0\n'
                 'mem_mib = 2048\n')
    for name, body in sections.items():
        text += f"[{name}]\n{body}\n"
    return config.parse(text, "fake.toml")


def skewed_cluster(cfg: Config, burn: tuple[float, ...] = (0.2, 0.2, 0.15, 0.15, 0.1, 0.1)
                   ) -> tuple[FakeHypervisor, dict[str, float]]:
    hv = FakeHypervisor([h.name for h in cfg.hosts])
    loads = {}
    for i, b in enumerate(burn):
        name = f"vm{i + 1}"
        hv.add_vm(cfg.hosts[0].name, name, mem_mib=256)
        loads[name] = b
    return hv, loads


def fake_collect_job(cfg: Config, engine, hv: FakeHypervisor,  # type: ignore[no-untyped-def]
                     burn: dict[str, float]) -> CollectJob:
    t0 = time.monotonic()
    sources = [FakeSource(h.name, hv, burn, t0) for h in cfg.hosts]
    overrides = {h.name: CapacityOverride(h.cpu_cores, h.mem_mib) for h in cfg.hosts}
    return CollectJob(cfg, engine, Collector(sources, cfg.collector.timeout_s, overrides))
