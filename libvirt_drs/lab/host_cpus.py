"""Give each lab host physical CPUs of its own, so contention is per host as on real iron.

All lab hosts share this machine's CPUs: a host whose guests burn more than its
configured capacity slows every guest, on every host, a little. `HostCpus` pins the vCPUs
and emulator threads of each running guest to the CPUs of the host it runs on (libvirt's
`pinVcpuFlags` / `pinEmulator`, live), re-applied every `period_s` so a guest that just
migrated (it arrives with its old host's pinning) is moved onto its new host's CPUs. With
h1 on CPU 0 and h2 on CPU 1, guests burning 135 % of a core on h1 wait for it (libvirt's
`vcpu.<n>.delay` rises there) while h2's guests do not.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping

from libvirt_drs.lab.lab import Lab

log = logging.getLogger(__name__)


class HostCpus:
    """Context manager: host name -> the physical CPUs (indices) its guests may run on."""

    def __init__(self, lab: Lab, cpus: Mapping[str, set[int]], period_s: float = 0.5) -> None:
        online = os.cpu_count() or 1
        wanted = set().union(*cpus.values()) if cpus else set()
        if not wanted or max(wanted) >= online:
            raise ValueError(f"host CPUs {sorted(wanted)}: this machine has CPUs 0..{online - 1}")
        self.lab = lab
        self.period_s = period_s
        self._online = online
        self._maps = {h: tuple(i in c for i in range(online)) for h, c in cpus.items()}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lab-host-cpus", daemon=True)
        self.passes = 0  # completed pinning passes (tests wait for one)
        self._pass_done = threading.Condition()

    def __enter__(self) -> HostCpus:
        self.pin_all()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.unpin_all()

    def pin_all(self) -> None:
        """One pass: every running guest onto its current host's CPUs."""
        for host_name, cpumap in self._maps.items():
            self._pin_host(host_name, cpumap)
        with self._pass_done:
            self.passes += 1
            self._pass_done.notify_all()

    def unpin_all(self) -> None:
        """Every running guest back on all CPUs (the lab's normal state)."""
        every = (True,) * self._online
        for host_name in self._maps:
            self._pin_host(host_name, every)

    def wait_pass(self, timeout_s: float = 10.0) -> bool:
        """Wait for a pinning pass that started after this call."""
        with self._pass_done:
            target = self.passes + 2
            return self._pass_done.wait_for(lambda: self.passes >= target, timeout_s)

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            try:
                self.pin_all()
            except Exception as exc:  # a host restarting mid-pass: try again next period
                log.warning("lab host CPUs: pinning pass failed: %s", exc)

    def _pin_host(self, host_name: str, cpumap: tuple[bool, ...]) -> None:
        import libvirt  # noqa: PLC0415

        with self.lab.connect(host_name) as conn:
            for dom in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
                try:
                    for vcpu in range(dom.vcpusFlags(libvirt.VIR_DOMAIN_AFFECT_LIVE)):
                        dom.pinVcpuFlags(vcpu, cpumap, libvirt.VIR_DOMAIN_AFFECT_LIVE)
                    dom.pinEmulator(cpumap, libvirt.VIR_DOMAIN_AFFECT_LIVE)
                except libvirt.libvirtError as exc:  # migrating away or paused: next pass
                    log.debug("lab host CPUs: %s on %s: %s", dom.name(), host_name, exc)
