"""`drs bench web`: how fast the console and the API answer at vSphere's cluster maximum.

A scratch database gets H hosts and N VMs with a few collector cycles of samples (an
in-process fake of libvirt's bulk stats call, as `drs bench collect` (c)); the real
console and API serve it over HTTP on loopback (uvicorn, as `drs serve` does); each page
is asked for R times. A benchmark, not a test: the figures go to docs/benchmarks.md."""

from __future__ import annotations

import math
import statistics
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import click

from libvirt_drs.cli.common import console, json_option, print_json

PATHS = {"overview page": "/", "VM list API": "/api/v1/vms?limit=20000",
         "status API": "/api/v1/status", "VMs page": "/vms"}


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def _populate(url: str, n_hosts: int, n_vms: int, cycles: int) -> Any:
    from libvirt_drs.cli.bench_collect import FakeStatsConnection, _opener  # noqa: PLC0415
    from libvirt_drs.collect import CollectJob  # noqa: PLC0415
    from libvirt_drs.collectors.cycle import Collector  # noqa: PLC0415
    from libvirt_drs.collectors.libvirt_source import LibvirtSource  # noqa: PLC0415
    from libvirt_drs.config import parse  # noqa: PLC0415
    from libvirt_drs.db import schema  # noqa: PLC0415
    from libvirt_drs.db.engine import make_engine  # noqa: PLC0415

    per_host = math.ceil(n_vms / n_hosts)
    text = f'[database]\nurl = "{url}"\n'
    for i in range(n_hosts):
        text += f'[[hosts]]\nname = "h{i}"\nuri = "test:///h{i}"\n'
    cfg = parse(text, "bench-web.toml")
    engine = make_engine(url)
    schema.upgrade(engine)
    conns = [FakeStatsConnection(i, per_host if i < n_vms // per_host else n_vms - i * per_host)
             for i in range(n_hosts)]
    sources = [LibvirtSource(f"h{i}", f"bench://h{i}", open_fn=_opener(c))
               for i, c in enumerate(conns)]
    job = CollectJob(cfg, engine, Collector(sources, timeout_s=60))
    for k in range(cycles + 1):  # the first only primes the CPU rates
        job.run_cycle(write=k > 0)
        time.sleep(0.5)
    job.close()
    return cfg, engine


def _get(url: str, headers: dict[str, str]) -> tuple[float, int]:
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 - loopback
    t0 = time.perf_counter()
    with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
        size = len(response.read())
    return (time.perf_counter() - t0) * 1000.0, size


@click.command("web")
@click.option("--hosts", "n_hosts", type=click.IntRange(1), default=96, show_default=True,
              help="Hosts in the database (vSphere's cluster maximum is 96).")
@click.option("--vms", "n_vms", type=click.IntRange(1), default=10000, show_default=True,
              help="VMs in the database (vSphere's cluster maximum is 10,000).")
@click.option("--requests", "n_requests", type=click.IntRange(5), default=50, show_default=True,
              help="Requests per page.")
@click.option("--cycles", type=click.IntRange(1), default=3, show_default=True,
              help="Collector cycles of samples written before measuring.")
@json_option
def web(n_hosts: int, n_vms: int, n_requests: int, cycles: int, as_json: bool) -> None:
    """Time the console's overview page and the VM list API (p50, p95) over HTTP."""
    from rich.table import Table  # noqa: PLC0415

    from libvirt_drs.operations import tokens  # noqa: PLC0415
    from libvirt_drs.operations.caller import cli_caller  # noqa: PLC0415
    from libvirt_drs.operations.context import Cluster  # noqa: PLC0415
    from libvirt_drs.web.app import create_app  # noqa: PLC0415
    from libvirt_drs.web.server import WebServer  # noqa: PLC0415

    with tempfile.TemporaryDirectory(prefix="drs-bench-web-") as tmp:
        cfg, engine = _populate(f"sqlite:///{Path(tmp) / 'bench.sqlite'}", n_hosts, n_vms,
                                cycles)
        cluster = Cluster(cfg, engine, actor="drs-bench")
        _, secret = tokens.create(cluster, cli_caller(), "bench", "viewer")
        server = WebServer(create_app(cluster), "127.0.0.1", 0).start()
        base = f"http://127.0.0.1:{server.port}"
        try:
            login = urllib.request.Request(base + "/login", data=f"token={secret}".encode(),
                                           headers={"Origin": base}, method="POST")
            opener = urllib.request.build_opener(_NoRedirect)
            with opener.open(login, timeout=60) as r:  # noqa: S310
                cookie = r.headers["set-cookie"].split(";")[0]
            rows: list[dict[str, Any]] = []
            for label, path in PATHS.items():
                headers = ({"Cookie": cookie} if not path.startswith("/api/")
                           else {"Authorization": f"Bearer {secret}"})
                _get(base + path, headers)  # warm up
                times, size = [], 0
                for _ in range(n_requests):
                    ms, size = _get(base + path, headers)
                    times.append(ms)
                rows.append({"page": label, "path": path, "requests": n_requests,
                             "p50_ms": round(statistics.median(times), 1),
                             "p95_ms": round(_percentile(times, 0.95), 1),
                             "max_ms": round(max(times), 1), "bytes": size})
        finally:
            server.stop()
            engine.dispose()
    data = {"hosts": n_hosts, "vms": n_vms, "pages": rows}
    if as_json:
        print_json(data)
        return
    table = Table(title=f"console and API over HTTP: {n_hosts} hosts, {n_vms} VMs")
    for col in ("page", "p50 ms", "p95 ms", "max ms", "bytes"):
        table.add_column(col, justify="left" if col == "page" else "right")
    for r in rows:
        table.add_row(r["page"], str(r["p50_ms"]), str(r["p95_ms"]), str(r["max_ms"]),
                      str(r["bytes"]))
    console.print(table)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None

    def http_error_303(self, req: Any, fp: Any, code: int, msg: str, headers: Any) -> Any:
        return fp
