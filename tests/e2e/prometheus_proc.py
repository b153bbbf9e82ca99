"""A real Prometheus (Debian package) for the end-to-end tests: own config and data dir
in a temp directory, listening on 127.0.0.1, tracked by pid and stopped by the caller."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

PROMETHEUS = "/usr/bin/prometheus"


def available() -> str | None:
    """Why Prometheus cannot run here, or None."""
    if not (Path(PROMETHEUS).exists() or shutil.which("prometheus")):
        return "prometheus missing (apt-get install prometheus)"
    return None


class Prometheus:
    def __init__(self, workdir: Path, port: int, targets: list[str],
                 scrape_interval_s: float = 1.0) -> None:
        self.port = port
        self.dir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        config = workdir / "prometheus.yml"
        config.write_text(
            "global:\n"
            f"  scrape_interval: {scrape_interval_s:g}s\n"
            f"  evaluation_interval: {scrape_interval_s:g}s\n"
            "scrape_configs:\n"
            "  - job_name: drs\n"
            "    static_configs:\n"
            f"      - targets: [{', '.join(repr(t) for t in targets)}]\n")
        self.log = (workdir / "prometheus.log").open("wb")
        self.proc = subprocess.Popen(
            [shutil.which("prometheus") or PROMETHEUS, f"--config.file={config}",
             f"--storage.tsdb.path={workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=1h",
             "--log.level=warn"],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
        self.pid = self.proc.pid

    def api(self, path: str, **params: str) -> dict:
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 - loopback
            return json.loads(resp.read())

    def wait_ready(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"prometheus exited {self.proc.returncode}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready",
                                            timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.3)
        raise AssertionError("prometheus not ready")

    def targets_up(self) -> bool:
        data = self.api("targets")["data"]["activeTargets"]
        return bool(data) and all(t["health"] == "up" for t in data)

    def query_range(self, expr: str, start: float, end: float, step_s: float = 2.0) -> list:
        res = self.api("query_range", query=expr, start=f"{start:.3f}", end=f"{end:.3f}",
                       step=f"{step_s:g}s")
        assert res["status"] == "success", res
        return res["data"]["result"]

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.log.close()
        shutil.rmtree(self.dir / "data", ignore_errors=True)
