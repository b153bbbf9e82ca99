"""`drs bench collect`: what the collectors cost (a benchmark, not a test).

(a) sample cost per host: repeated polls of every host of a config (e.g. the lab's);
(b) sample ingest into SQLite and PostgreSQL, rows per second, batched as in a cycle;
(c) one collect cycle for H hosts x V VMs against an in-process fake of
    getAllDomainStats (the real adapter, rates, placement and host sums run), CPU
    seconds per cycle, and the database write of that cycle.
Standalone click command; attached to the `bench` group by the CLI wiring.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
import uuid as uuidlib
from pathlib import Path
from typing import Any

import click
import libvirt
from rich.table import Table
from sqlalchemy import text

from libvirt_drs import config as config_mod
from libvirt_drs.cli.common import console, print_json
from libvirt_drs.collectors.cycle import Collector
from libvirt_drs.collectors.libvirt_source import ACTIVE, NOWAIT, STATS, LibvirtSource
from libvirt_drs.config import HostConfig
from libvirt_drs.db import schema
from libvirt_drs.db.engine import make_engine, scratch_database
from libvirt_drs.db.samples import VM_SAMPLE_COLUMNS, SampleStore
from libvirt_drs.errors import UserError

PG_ENV = "DRS_BENCH_POSTGRES_URL"


class _Dom:
    __slots__ = ("_uuid", "_name")

    def __init__(self, uuid: str, name: str) -> None:
        self._uuid, self._name = uuid, name

    def UUIDString(self) -> str:  # noqa: N802 - libvirt's name
        return self._uuid

    def name(self) -> str:
        return self._name


class FakeStatsConnection:
    """getAllDomainStats and friends for V VMs burning fixed CPU, computed per call."""

    def __init__(self, host_index: int, n_vms: int) -> None:
        self.doms = [_Dom(str(uuidlib.UUID(int=host_index * 100_000 + i + 1)),
                          f"h{host_index}-vm{i}") for i in range(n_vms)]
        self.burn = [0.05 * (i % 10) for i in range(n_vms)]
        self.t0 = time.monotonic()

    def getAllDomainStats(self, stats: int, flags: int) -> list[tuple[_Dom, dict[str, Any]]]:  # noqa: N802
        elapsed = time.monotonic() - self.t0
        return [(d, {"state.state": 1, "state.reason": 1, "cpu.time": int(b * elapsed * 1e9) + 1,
                     "vcpu.current": 1, "vcpu.maximum": 1,
                     "vcpu.0.delay": int(b * elapsed * 1e8), "balloon.current": 1048576,
                     "balloon.maximum": 1048576, "balloon.rss": 524288})
                for d, b in zip(self.doms, self.burn, strict=True)]

    def getInfo(self) -> list[Any]:  # noqa: N802
        return ["x86_64", 262144, 64, 2400, 1, 2, 16, 2]

    def getCPUStats(self, cpu: int) -> dict[str, int]:  # noqa: N802
        return {"user": 1, "kernel": 1, "idle": 1, "iowait": 0}

    def getMemoryStats(self, cell: int) -> dict[str, int]:  # noqa: N802
        return {"total": 268435456, "free": 134217728}

    def getCapabilities(self) -> str:  # noqa: N802
        return "<capabilities><host><cpu><model>Bench</model></cpu></host></capabilities>"

    def close(self) -> int:
        return 0


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def bench_sample_cost(config_path: str, polls: int,
                      lab_name: str | None = None) -> list[dict[str, Any]]:
    """Wall time per poll, and CPU per poll: ours and (with a lab name) libvirtd's."""
    cfg = config_mod.load(config_path)
    if not cfg.hosts:
        raise UserError(f"{config_path}: no [[hosts]] to poll")
    daemon_pids: dict[str, int] = {}
    if lab_name:
        from libvirt_drs.lab.lab import Lab  # noqa: PLC0415

        daemon_pids = {h.name: h.pid for h in Lab.load(lab_name).hosts}
    out = []
    for host in cfg.hosts:
        src = LibvirtSource(host.name, host.uri)
        src.poll()  # connect and warm up
        times, n_vms = [], 0
        pid = daemon_pids.get(host.name)
        d0, c0 = _proc_cpu_s(pid), time.process_time()
        for _ in range(polls):
            t0 = time.perf_counter()
            n_vms = len(src.poll().domains)
            times.append((time.perf_counter() - t0) * 1000)
        client_ms = (time.process_time() - c0) * 1000 / polls
        d1 = _proc_cpu_s(pid)
        src.close()
        out.append({"host": host.name, "vms": n_vms, "p50_ms": statistics.median(times),
                    "p95_ms": _pct(times, 0.95), "max_ms": max(times),
                    "client_cpu_ms": client_ms,
                    "libvirtd_cpu_ms": None if d0 is None or d1 is None
                    else (d1 - d0) * 1000 / polls,
                    **_bulk_call_split(host.uri, polls)})
    return out


def _bulk_call_split(uri: str, calls: int) -> dict[str, float]:
    """p50 of the bulk stats call alone, with and without the balloon group: the balloon
    group is the one that asks every guest's QEMU over its monitor, one after another."""
    conn = libvirt.open(uri)
    flags = ACTIVE | NOWAIT
    try:
        try:
            conn.getAllDomainStats(STATS, flags)
        except libvirt.libvirtError:
            flags = ACTIVE  # a server without the no-wait flag (the adapter falls back too)
        out = {}
        for key, groups in (("bulk_call_p50_ms", STATS),
                            ("bulk_call_no_balloon_p50_ms",
                             STATS & ~libvirt.VIR_DOMAIN_STATS_BALLOON)):
            times = []
            for _ in range(calls):
                t0 = time.perf_counter()
                conn.getAllDomainStats(groups, flags)
                times.append((time.perf_counter() - t0) * 1000)
            out[key] = statistics.median(times)
        return out
    finally:
        conn.close()


def _proc_cpu_s(pid: int | None) -> float | None:
    if not pid:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _ingest(url: str, rows: int, batch: int) -> dict[str, Any]:
    engine = make_engine(url)
    schema.upgrade(engine)
    store = SampleStore(engine)
    hosts = [HostConfig(f"b{i}", "test:///default") for i in range(10)]
    ids = list(store.sync_hosts(hosts).values())
    with engine.begin() as conn:  # VM rows the samples point at (foreign keys)
        conn.execute(text("INSERT INTO vms (uuid, name, host_id, vcpus, mem_mib, state, "
                          "first_seen_s) VALUES (:u, :n, :h, 1, 1024, 'running', 0)"),
                     [{"u": f"bench-{i}", "n": f"vm{i}", "h": ids[i % 10]} for i in range(1000)])
        vm_ids = [r[0] for r in conn.execute(text("SELECT id FROM vms ORDER BY id"))]
    done, t0, c0 = 0, time.perf_counter(), time.process_time()
    ts = 1.8e9
    server_cpu: float | None = 0.0
    while done < rows:
        n = min(batch, rows - done)
        chunk = [(vm_ids[i % 1000], ids[i % 10], ts, 0.25, 512.0, 0.01, None) for i in range(n)]
        with engine.begin() as conn:
            before = _backend_cpu_s(conn) if store.is_postgres else 0.0
            store.insert_samples(conn, "vm_samples", VM_SAMPLE_COLUMNS, chunk)
            after = _backend_cpu_s(conn) if store.is_postgres else 0.0
        if server_cpu is not None and before is not None and after is not None:
            server_cpu += after - before
        else:
            server_cpu = None
        done += n
        ts += 20
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    engine.dispose()
    total_cpu = cpu + (server_cpu or 0.0)
    return {"rows": rows, "batch": batch, "seconds": elapsed, "client_cpu_s": cpu,
            "server_cpu_s": server_cpu if store.is_postgres else None,
            "rows_per_s": rows / elapsed,
            "rows_per_cpu_s": rows / total_cpu if server_cpu is not None and total_cpu else None}


def _backend_cpu_s(conn: Any) -> float | None:
    """CPU seconds of this connection's PostgreSQL backend (a local server only)."""
    return _proc_cpu_s(conn.execute(text("SELECT pg_backend_pid()")).scalar())


def bench_ingest(rows: int, batch: int, pg_url: str | None) -> list[dict[str, Any]]:
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        res = _ingest(f"sqlite:///{Path(tmp) / 'bench.sqlite'}", rows, batch)
        out.append({"backend": "sqlite", **res})
    if pg_url:
        with scratch_database(pg_url, "drs_bench") as url:
            out.append({"backend": "postgresql", **_ingest(url, rows, batch)})
    return out


def _opener(conn: FakeStatsConnection) -> Any:
    return lambda _uri: conn


def bench_cycle(n_hosts: int, n_vms: int, cycles: int, pg_url: str | None) -> dict[str, Any]:
    conns = [FakeStatsConnection(i, n_vms) for i in range(n_hosts)]
    sources = [LibvirtSource(f"h{i}", f"bench://h{i}", open_fn=_opener(c))
               for i, c in enumerate(conns)]
    collector = Collector(sources, timeout_s=30)
    results: dict[str, Any] = {"hosts": n_hosts, "vms_per_host": n_vms}
    cpu_s, wall_s, last = [], [], None
    for _ in range(cycles + 1):  # the first cycle only primes the rates
        c0, w0 = time.process_time(), time.perf_counter()
        last = collector.run_cycle()
        cpu_s.append(time.process_time() - c0)
        wall_s.append(time.perf_counter() - w0)
        time.sleep(0.2)
    assert last is not None
    failed = [f"{h.name}: {h.error}" for h in last.hosts if not h.ok]
    if failed:  # a figure for a pipeline that did nothing would be meaningless
        raise RuntimeError(f"bench cycle: {len(failed)} hosts failed, e.g. {failed[0]}")
    results.update(cycle_cpu_s=statistics.median(cpu_s[1:]),
                   cycle_wall_s=statistics.median(wall_s[1:]),
                   vms_with_rate=sum(v.cpu_cores is not None for v in last.vms))
    try:
        with tempfile.TemporaryDirectory() as tmp:
            results["write_sqlite"] = _bench_write(f"sqlite:///{Path(tmp) / 'cycle.sqlite'}",
                                                   collector, n_hosts, cycles)
        if pg_url:
            with scratch_database(pg_url, "drs_bench") as url:
                results["write_postgresql"] = _bench_write(url, collector, n_hosts, cycles)
    finally:
        collector.close()
    return results


def _bench_write(url: str, collector: Collector, n_hosts: int, cycles: int) -> dict[str, float]:
    engine = make_engine(url)
    try:
        schema.upgrade(engine)
        store = SampleStore(engine)
        store.sync_hosts([HostConfig(f"h{i}", f"bench://h{i}") for i in range(n_hosts)])
        store.write_cycle(collector.run_cycle())  # inventory inserts happen here
        cpu, wall = [], []
        for _ in range(cycles):
            result = collector.run_cycle()
            c0, w0 = time.process_time(), time.perf_counter()
            store.write_cycle(result)
            cpu.append(time.process_time() - c0)
            wall.append(time.perf_counter() - w0)
        return {"cpu_s": statistics.median(cpu), "wall_s": statistics.median(wall)}
    finally:
        engine.dispose()


@click.command("collect")
@click.option("--lab-config", type=click.Path(exists=True, dir_okay=False),
              help="(a) Poll every host of this config (e.g. the lab's) --polls times.")
@click.option("--polls", type=click.IntRange(1), default=50, show_default=True,
              help="(a) Polls of each host to time.")
@click.option("--lab", "lab_name", default=None,
              help="(a) Name of the lab behind --lab-config: also report libvirtd CPU per poll.")
@click.option("--parts", default=None,
              help="Which parts to run, comma-separated from a, b, c "
                   "[default: a,b,c with --lab-config, else b,c].")
@click.option("--rows", type=click.IntRange(1), default=200_000, show_default=True,
              help="(b) Sample rows to ingest per backend.")
@click.option("--batch", type=click.IntRange(1), default=20_000, show_default=True,
              help="(b) Rows per transaction (a 1,000 x 20 cycle writes 20,000).")
@click.option("--postgres-url", envvar=PG_ENV, default=None,
              help=f"PostgreSQL server for (b) and (c); a scratch database is created and "
                   f"dropped (env {PG_ENV}).")
@click.option("--hosts", "n_hosts", type=click.IntRange(1), default=1000, show_default=True,
              help="(c) Hosts of the simulated cycle (an in-process fake of the stats call).")
@click.option("--vms", "n_vms", type=click.IntRange(0), default=20, show_default=True,
              help="(c) VMs per host of the simulated cycle.")
@click.option("--cycles", type=click.IntRange(1), default=3, show_default=True,
              help="(c) Cycles to time (the first primes the CPU rates).")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def collect(lab_config: str | None, polls: int, lab_name: str | None, parts: str | None, rows: int,
            batch: int, postgres_url: str | None, n_hosts: int, n_vms: int, cycles: int,
            as_json: bool) -> None:
    """Benchmark the collectors: per-host sample cost, ingest rate, cycle overhead."""
    report: dict[str, Any] = {}
    wanted = _parts(parts, lab_config)
    if lab_config and "a" in wanted:
        report["sample_cost"] = bench_sample_cost(lab_config, polls, lab_name)
    if "b" in wanted:
        report["ingest"] = bench_ingest(rows, batch, postgres_url)
    if "c" in wanted:
        report["cycle"] = bench_cycle(n_hosts, n_vms, cycles, postgres_url)
    if as_json:
        print_json(report)
        return
    _print(report)


def _parts(parts: str | None, lab_config: str | None) -> set[str]:
    if parts is None:
        return {"a", "b", "c"} if lab_config else {"b", "c"}
    wanted = {p.strip() for p in parts.split(",") if p.strip()}
    unknown = sorted(wanted - {"a", "b", "c"})
    if unknown or not wanted:
        raise click.BadParameter(f"unknown part {', '.join(unknown) or '(none)'}; "
                                 "choose from a, b, c", param_hint="--parts")
    if "a" in wanted and not lab_config:
        raise click.BadParameter("part a polls real hosts: give --lab-config",
                                 param_hint="--parts")
    return wanted


def _print(report: dict[str, Any]) -> None:
    if "sample_cost" in report:
        t = Table(title="(a) sample cost per host poll, ms (target p50 < 20); CPU per poll; "
                        "p50 of the bulk stats call alone, with and without the balloon group")
        for col in ("host", "VMs", "p50", "p95", "max", "CPU ours", "CPU libvirtd", "bulk",
                    "no balloon"):
            t.add_column(col)
        for r in report["sample_cost"]:
            lv = r["libvirtd_cpu_ms"]
            t.add_row(r["host"], str(r["vms"]), f"{r['p50_ms']:.2f}", f"{r['p95_ms']:.2f}",
                      f"{r['max_ms']:.2f}", f"{r['client_cpu_ms']:.2f}",
                      "-" if lv is None else f"{lv:.2f}", f"{r['bulk_call_p50_ms']:.2f}",
                      f"{r['bulk_call_no_balloon_p50_ms']:.2f}")
        console.print(t)
    if "ingest" in report:
        _print_ingest(report["ingest"])
    if "cycle" in report:
        _print_cycle(report["cycle"])


def _print_ingest(rows: list[dict[str, Any]]) -> None:
    t = Table(title="(b) ingest (target >= 50,000 rows/s)")
    for col in ("backend", "rows", "batch", "seconds", "client CPU s", "server CPU s", "rows/s",
                "rows/CPU-s"):
        t.add_column(col)
    for r in rows:
        server = r.get("server_cpu_s")
        per_cpu = r["rows_per_cpu_s"]
        t.add_row(r["backend"], str(r["rows"]), str(r["batch"]), f"{r['seconds']:.2f}",
                  f"{r['client_cpu_s']:.2f}", "-" if server is None else f"{server:.2f}",
                  f"{r['rows_per_s']:,.0f}", "-" if per_cpu is None else f"{per_cpu:,.0f}")
    console.print(t)


def _print_cycle(c: dict[str, Any]) -> None:
    console.print(f"(c) cycle {c['hosts']} hosts x {c['vms_per_host']} VMs: "
                  f"{c['cycle_cpu_s']:.2f} s CPU, {c['cycle_wall_s']:.2f} s wall "
                  f"(target < 2 s CPU); "
                  f"{c['vms_with_rate']} VM rates", highlight=False)
    for key, value in c.items():
        if key.startswith("write_"):
            console.print(f"    write of that cycle ({key[6:]}): {value['cpu_s']:.2f} s CPU, "
                          f"{value['wall_s']:.2f} s wall", highlight=False)

