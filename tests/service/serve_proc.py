"""Run real `drs serve` processes for tests: config on libvirt's test driver, pid tracking,
/metrics scraping. Every process started here is tracked by pid and ended by the fixture."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

DRS = [sys.executable, "-m", "libvirt_drs"]

_NODE = """<node>
  <cpu><mode>fixed</mode><nodes>1</nodes><sockets>1</sockets><cores>2</cores><threads>1</threads>
  <active>2</active><mhz>2000</mhz><model>i686</model></cpu>
  <memory>4194304</memory>
  <domain type='test'>
    <name>{vm}</name><uuid>{uuid}</uuid>
    <memory>262144</memory><currentMemory>262144</currentMemory><vcpu>1</vcpu>
    <os><type>hvm</type></os>
  </domain>
</node>
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def driver_config(tmp_path: Path, db_url: str, hosts: int = 2, extra: str = "") -> Path:
    """A drs config whose hosts are libvirt test-driver nodes (one VM each)."""
    text = f'[database]\nurl = "{db_url}"\n'
    for i in range(1, hosts + 1):
        node = tmp_path / f"h{i}.xml"
        node.write_text(_NODE.format(vm=f"t{i}", uuid=f"11111111-2222-3333-4444-5555555555{i:02d}"))
        text += (f'[[hosts]]\nname = "h{i}"\nuri = "test://{node}"\ncpu_cores = 2\n'
                 "mem_mib = 4096\n")
    path = tmp_path / "drs.toml"
    path.write_text(text + extra)
    return path


class ServeProcess:
    """`drs serve` with /metrics on `port` and the console on `web_port` (None: no console,
    so that parallel processes never contend for its default port)."""

    def __init__(self, config: Path, port: int, args: list[str], log: Path,
                 web_port: int | None = None) -> None:
        self.port = port
        self.web_port = web_port
        self.log = log
        self._out = log.open("wb")
        web = f"127.0.0.1:{web_port}" if web_port else ""
        self.proc = subprocess.Popen(
            [*DRS, "--config", str(config), "serve", "--metrics-listen", f"127.0.0.1:{port}",
             "--web-listen", web, *args], stdout=self._out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True)
        self.pid = self.proc.pid

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=3) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except OSError:
            return 0, ""

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        status, text = self.get("/metrics")
        if status != 200:
            return {}
        out = {}
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return out

    def value(self, name: str, **labels: str) -> float | None:
        return self.metrics().get((name, tuple(sorted(labels.items()))))

    def wait_healthy(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"drs serve exited {self.proc.returncode}:\n{self.output()}")
            if self.get("/healthz")[0] == 200:
                return
            time.sleep(0.2)
        raise AssertionError(f"drs serve not healthy in {timeout_s} s:\n{self.output()}")

    def output(self) -> str:
        self._out.flush()
        return self.log.read_text(errors="replace")[-4000:]

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            os.kill(self.pid, sig)

    def stop(self) -> None:
        """End the process if it still runs (SIGTERM, then SIGKILL) and reap it."""
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self._out.close()


def wait_for(cond, timeout_s: float, step_s: float = 0.2) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step_s)
    return False
