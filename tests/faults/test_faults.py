"""Fault injection on a real lab (2 libvirtd hosts, 2 TCG guests): break things on purpose,
then check the invariants of tests/faults/invariants.py. Figures: $DRS_FAULT_RESULTS.

Random-point cases run --fault-runs times (3 by default, 10 for the published figures);
kill points come from a seeded RNG (the seed is printed; --fault-seed replays it).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from libvirt_drs.cli import cli
from libvirt_drs.collect import CollectJob
from libvirt_drs.config import parse
from libvirt_drs.db import schema
from libvirt_drs.db.engine import make_engine
from libvirt_drs.db.models import MigrationJob, PlanRow
from libvirt_drs.lab import config_out
from libvirt_drs.migrator.model import JobState, MoveRequest
from libvirt_drs.migrator_builder import Migrator, build
from libvirt_drs.secrets import redact
from tests.faults import invariants
from tests.faults.conftest import Figures, dropped_migration_traffic
from tests.service.serve_proc import ServeProcess, free_port, wait_for

pytestmark = [pytest.mark.fault, pytest.mark.lab, pytest.mark.timeout(1800)]

MIB = 1024 * 1024
TOUCH_MIB = 48  # what each guest keeps dirty: the bulk of a migration's transfer
REPO = Path(__file__).resolve().parents[2]


# --- helpers -----------------------------------------------------------------------------

class Case:
    """One case's database and config on the fault lab."""

    def __init__(self, lab: Any, tmp: Path, migrator_extra: str = "", url: str | None = None,
                 extra: str = "") -> None:
        self.lab = lab
        self.url = url or f"sqlite:///{tmp / 'drs.sqlite'}"
        self.engine = make_engine(self.url)
        schema.upgrade(self.engine)
        self.text = config_out.render(lab.state, self.url) + migrator_extra + "\n" + extra
        self.path = tmp / "drs.toml"
        self.path.write_text(self.text)
        self.cfg = parse(self.text, str(self.path))

    def migrator(self) -> Migrator:
        return build(self.cfg, engine=self.engine)

    def collect(self) -> None:
        job = CollectJob(self.cfg, self.engine)
        try:
            job.run_cycle()
        finally:
            job.close()

    def last_job_id(self) -> int:
        with Session(self.engine) as s:
            return max(s.scalars(select(MigrationJob.id)).all(), default=0)

    def jobs(self, since: int = 0) -> list[Any]:
        with Session(self.engine) as s:
            return list(s.scalars(select(MigrationJob).where(MigrationJob.id > since)
                                  .order_by(MigrationJob.id)))


def hosts_up(lab: Any) -> None:
    for h in lab.hosts:
        lab.start_host(h.name)  # no-op when its libvirtd runs


def skew(lab: Any) -> None:
    """Both guests on h1, running (restarting any that died)."""
    hosts_up(lab)
    lab.reset_placement()
    where = lab.where()
    assert sorted(where) == sorted(v.name for v in lab.vms) and set(where.values()) == {"h1"}


def close(m: Migrator) -> None:
    closer = getattr(m.hv, "close", None)
    if closer is not None:
        closer()


def finish(figures: Figures, case: str, res: invariants.Result, all_violations: list[str],
           **extra: Any) -> None:
    """Record one run; invariant violations and the case's own failed checks go into
    `all_violations` (the test asserts it is empty at the end, after every run)."""
    figures.record(case, res.violations, res.notes, res.failures, **extra)
    all_violations += [f"{case}: {v}" for v in res.violations]
    all_violations += [f"{case}: (check) {v}" for v in res.failures]
    print(f"{case}: {extra} violations={res.violations} failures={res.failures} "
          f"notes={res.notes}")


def stop_within(proc: Any, timeout_s: float) -> str | None:
    """SIGTERM `proc` (a ServeProcess); None if it exited 0 within timeout_s, else why not."""
    proc.signal(signal.SIGTERM)
    try:
        code = proc.proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return f"drs serve still running {timeout_s:g} s after SIGTERM"
    return None if code == 0 else f"drs serve exited {code} on SIGTERM"


# --- libvirtd killed during a migration -----------------------------------------------------

def _kill_libvirtd_during_migration(lab: Any, tmp: Path, side: str, fraction: float
                                    ) -> tuple[invariants.Result, dict[str, Any]]:
    skew(lab)
    case = Case(lab, tmp, migrator_extra="bandwidth_mib_s = 16\n")
    vm, src, dst = "vm1", "h1", "h2"
    victim = dst if side == "destination" else src
    pid = lab.state.host(victim).pid
    threshold = int(fraction * TOUCH_MIB * MIB)
    marks = invariants.beat_marks(lab)
    m = case.migrator()
    killed: list[int] = []

    def kill_at_point(_job: object, progress: Any) -> None:
        if not killed and progress.bytes_processed >= threshold:
            os.kill(pid, signal.SIGKILL)
            killed.append(progress.bytes_processed)

    [job] = m.runner.submit([MoveRequest(vm, src, dst)])
    try:
        m.runner.run([job.id], kill_at_point)
    finally:
        lab.stop_host(victim)  # reaps the killed libvirtd (or kills it if the point was missed)
        close(m)
        lab.start_host(victim)
    row = m.store.get(job.id)
    res = invariants.check(lab, case.engine, 0, marks, case.collect)
    case.engine.dispose()
    return res, {"point_mib": round(threshold / MIB, 1),
                 "killed_at_mib": round(killed[0] / MIB, 1) if killed else None,
                 "job": f"{row.state}: {row.error}"}


def test_destination_libvirtd_killed_at_random_points(fault_lab: Any, tmp_path: Path, rng: Any,
                                                       fault_runs: int, figures: Figures) -> None:
    violations: list[str] = []
    for run in range(fault_runs):
        fraction = rng.uniform(0.0, 1.0)
        res, extra = _kill_libvirtd_during_migration(fault_lab, tmp_path / f"r{run}",
                                                     "destination", fraction)
        finish(figures, "destination libvirtd killed during a migration", res, violations,
               **extra)
    assert not violations


def test_source_libvirtd_killed_during_a_migration(fault_lab: Any, tmp_path: Path, rng: Any,
                                                   figures: Figures) -> None:
    violations: list[str] = []
    res, extra = _kill_libvirtd_during_migration(fault_lab, tmp_path, "source",
                                                 rng.uniform(0.2, 0.6))
    finish(figures, "source libvirtd killed during a migration", res, violations, **extra)
    assert not violations


# --- drs serve killed with SIGKILL during a rebalance -------------------------------------

SERVE_ARGS = ["--collect-interval", "1", "--balance-interval", "8", "--observe-interval", "1",
              "--lease", "3", "--grace", "10"]


def _job_rows(engine: Engine) -> list[Any]:
    with Session(engine) as s:
        return list(s.scalars(select(MigrationJob).order_by(MigrationJob.id)))


def _plans(engine: Engine) -> int:
    with Session(engine) as s:
        return len(s.scalars(select(PlanRow.id)).all())


def _serve_killed_run(lab: Any, tmp: Path, point: str, fraction: float
                      ) -> tuple[invariants.Result, dict[str, Any]]:
    tmp.mkdir()
    skew(lab)
    case = Case(lab, tmp, migrator_extra="bandwidth_mib_s = 16\n",
                extra='[balancer]\nmode = "automatic"\naggressiveness = 3\n')
    marks = invariants.beat_marks(lab)
    serve = ServeProcess(case.path, free_port(), [*SERVE_ARGS, "--first-balance-delay", "3"],
                         tmp / "serve-1.log")
    restarted = None

    def reached() -> bool:
        if point == "plan":
            return _plans(case.engine) > 0
        rows = _job_rows(case.engine)
        if any(j.state not in ("queued", "running") for j in rows):
            return True  # it moved fewer bytes than the point: kill right after it ended
        running = [j for j in rows if j.state == "running"]
        return bool(running) and (running[0].bytes_processed or 0) >= fraction * TOUCH_MIB * MIB

    def settled() -> bool:
        return not [j for j in _job_rows(case.engine) if j.state in ("running", "queued")]

    try:
        assert wait_for(reached, 90, step_s=0.05), \
            f"the rebalance never reached the kill point:\n{serve.output()}"
        serve.proc.send_signal(signal.SIGKILL)
        serve.proc.wait(timeout=30)  # reaped: its pid no longer exists for the reconciler
        at_kill = [(j.id, j.vm_name, j.state) for j in _job_rows(case.engine)]
        # restart: it reconciles on gaining leadership (manual mode: nothing new moves,
        # so the case ends in a quiet cluster)
        restarted = ServeProcess(case.path, free_port(),
                                 [*SERVE_ARGS, "--mode", "manual", "--first-balance-delay", "0"],
                                 tmp / "serve-2.log")
        # healthy = its signal handlers are installed: a SIGTERM during Python's start-up
        # would end it with the default action, which says nothing about drs
        restarted.wait_healthy(90)
        ok = wait_for(settled, 180, 0.5)
        stopped = stop_within(restarted, 60)
    finally:
        for p in (serve, restarted):
            if p is not None:
                p.stop()
    res = invariants.check(lab, case.engine, 0, marks, case.collect)
    if not ok:
        res.failures.append("jobs not settled 180 s after the restart")
    if stopped:
        res.failures.append(f"restarted {stopped} (log {tmp / 'serve-2.log'})")
    extra = {"point": point if point == "plan" else f"{fraction * TOUCH_MIB:.0f} MiB",
             "jobs_at_kill": at_kill,
             "jobs_after": [(j.id, j.vm_name, j.state, j.error) for j in _job_rows(case.engine)]}
    case.engine.dispose()
    return res, extra


def test_serve_sigkilled_at_random_points_of_a_rebalance(fault_lab: Any, tmp_path: Path,
                                                         rng: Any, fault_runs: int,
                                                         figures: Figures) -> None:
    violations: list[str] = []
    for run in range(fault_runs):
        # the point: as soon as a plan is recorded (planning / queueing), or once a given
        # share of the guest's dirty memory has been transferred
        point = rng.choice(["plan", "migrating", "migrating"])
        res, extra = _serve_killed_run(fault_lab, tmp_path / f"r{run}", point,
                                       rng.uniform(0.0, 0.9))
        finish(figures, "drs serve SIGKILLed during a rebalance, restarted", res, violations,
               **extra)
    assert not violations


# --- PostgreSQL stopped for 30 s while drs serve runs ---------------------------------------

PG_PORT = 54340


class _Secret(str):
    """A URL whose repr (pytest prints fixture values in tracebacks) hides the password."""

    def __repr__(self) -> str:
        return repr(redact(str(self)))


@pytest.fixture
def throwaway_postgres() -> Iterator[tuple[str, Path]]:
    """Our own PostgreSQL (never the suite's): (url, data dir). The directory is outside
    pytest's tmp (mode 0700 root) so that the postgres user can reach it."""
    pg_dir = Path(f"/var/tmp/drs-fault-pg-{uuid.uuid4().hex[:8]}")
    out = subprocess.run(["bash", str(REPO / "deploy/test-postgres.sh"), "start", str(pg_dir),
                          str(PG_PORT)], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        pytest.fail(f"cannot start the throwaway PostgreSQL: {out.stderr[-500:]}")
    try:
        yield _Secret(out.stdout.strip()), pg_dir
    finally:
        subprocess.run(["bash", str(REPO / "deploy/test-postgres.sh"), "stop", str(pg_dir)],
                       check=False)


def _pg_ctl(pg_dir: Path, *args: str) -> None:
    pgbin = sorted(Path("/usr/lib/postgresql").glob("*/bin"))[-1]
    subprocess.run(["runuser", "-u", "postgres", "--", str(pgbin / "pg_ctl"), "-D",
                    str(pg_dir / "data"), "-l", str(pg_dir / "server.log"), "-w", "-t", "60",
                    *args], check=True, stdout=subprocess.DEVNULL)


def test_postgres_stopped_for_30_s_while_serving(fault_lab: Any, tmp_path: Path,
                                                 throwaway_postgres: tuple[str, Path],
                                                 figures: Figures) -> None:
    url, pg_dir = throwaway_postgres
    password = url.split(":")[2].split("@")[0]
    skew(fault_lab)
    case = Case(fault_lab, tmp_path, migrator_extra="bandwidth_mib_s = 16\n", url=url,
                extra='[balancer]\nmode = "automatic"\naggressiveness = 3\n')
    marks = invariants.beat_marks(fault_lab)
    serve = ServeProcess(case.path, free_port(), [*SERVE_ARGS, "--first-balance-delay", "3"],
                         tmp_path / "serve.log")
    violations: list[str] = []
    try:
        serve.wait_healthy(90)
        # stop the database while a migration runs, if one starts soon (else mid-collection)
        wait_for(lambda: any(j.state == "running" for j in _job_rows(case.engine)), 45, 0.1)
        case.engine.dispose()
        _pg_ctl(pg_dir, "-m", "fast", "stop")
        t_stop = time.monotonic()
        alive_throughout = True
        while time.monotonic() - t_stop < 30:  # the fault itself lasts 30 s
            alive_throughout &= serve.proc.poll() is None
            time.sleep(1)
        _pg_ctl(pg_dir, "-o", f"-c listen_addresses=127.0.0.1 -p {PG_PORT} -k {pg_dir} "
                "-c fsync=off", "start")
        t_start = time.time()
        recovered = wait_for(lambda: _collected_after(case.engine, t_start), 90, 1)
        settled = wait_for(lambda: not [j for j in _job_rows(case.engine)
                                        if j.state in ("running", "queued")], 90, 1)
        stopped = stop_within(serve, 60)
    finally:
        serve.stop()
    log_text = serve.log.read_text(errors="replace")
    res = invariants.check(fault_lab, case.engine, 0, marks, case.collect)
    if not alive_throughout:
        res.failures.append(f"drs serve died during the outage:\n{log_text[-2000:]}")
    if not recovered:
        res.failures.append("no collect cycle written within 90 s after PostgreSQL returned")
    if not settled:
        res.failures.append("jobs left running/queued 90 s after PostgreSQL returned")
    if stopped:
        res.failures.append(stopped)
    if password in log_text:
        res.failures.append("the database password appears in the serve log")
    finish(figures, "PostgreSQL stopped 30 s while drs serve runs", res, violations,
           jobs=[(j.id, j.state, j.error) for j in _job_rows(case.engine)])
    case.engine.dispose()
    assert not violations


def _collected_after(engine: Engine, t: float) -> bool:
    from libvirt_drs.db.models import Host  # noqa: PLC0415

    try:
        with Session(engine) as s:
            seen = s.scalars(select(Host.last_seen_s)).all()
        return bool(seen) and min(x or 0 for x in seen) > t
    except Exception:  # noqa: BLE001 - the database may still be starting
        return False


# --- a host unreachable while planning --------------------------------------------------

def test_host_unreachable_while_planning(fault_lab: Any, tmp_path: Path,
                                         figures: Figures) -> None:
    skew(fault_lab)
    case = Case(fault_lab, tmp_path)
    marks = invariants.beat_marks(fault_lab)
    fault_lab.stop_host("h2")
    try:
        result = CliRunner().invoke(cli, ["--config", str(case.path), "rebalance", "--yes"])
    finally:
        fault_lab.start_host("h2")
    toward = [j for j in case.jobs() if j.destination == "h2" and j.state == "succeeded"]
    res = invariants.check(fault_lab, case.engine, 0, marks, case.collect)
    if result.exit_code not in (0, 1) or result.exception and not isinstance(
            result.exception, SystemExit):
        res.failures.append(f"rebalance exit {result.exit_code}: {result.output[-500:]}")
    if toward:
        res.violations.append(f"migrated to the unreachable host: {toward}")
    failed: list[str] = []
    finish(figures, "host unreachable while planning", res, failed,
           output=result.output.strip().splitlines()[-1:] if result.output else [])
    assert not failed


# --- a VM destroyed by someone else while queued and while migrating ---------------------------

def test_vm_destroyed_while_queued_and_while_migrating(fault_lab: Any, tmp_path: Path,
                                                       figures: Figures) -> None:
    skew(fault_lab)
    case = Case(fault_lab, tmp_path, migrator_extra="bandwidth_mib_s = 8\nmax_cluster = 1\n")
    m = case.migrator()
    jobs = m.runner.submit([MoveRequest("vm1", "h1", "h2"), MoveRequest("vm2", "h1", "h2")])
    done: list[str] = []

    def destroy(_job: Any, progress: Any) -> None:
        with fault_lab.connect("h1") as conn:
            if "vm2" not in done:  # vm2's job is still queued (max_cluster = 1)
                conn.lookupByName("vm2").destroy()
                done.append("vm2")
            elif "vm1" not in done and progress.bytes_processed > 8 * MIB:
                conn.lookupByName("vm1").destroy()
                done.append("vm1")

    try:
        m.runner.run([j.id for j in jobs], destroy)
    finally:
        close(m)
    rows = [m.store.get(j.id) for j in jobs]
    on, _mem, errors = invariants.placement(fault_lab)
    violations: list[str] = [f"unreachable: {e}" for e in errors]
    # nobody brought them back, nothing left running anywhere, no job left running
    for vm in ("vm1", "vm2"):
        if vm in done and on.get(vm):
            violations.append(f"{vm} destroyed by the operator but runs on {on[vm]}")
    for r in rows:
        if r.state in (JobState.RUNNING, JobState.QUEUED, JobState.SUCCEEDED):
            violations.append(f"job {r.id} {r.vm_name}: {r.state} {r.error}")
    with fault_lab.connect("h2") as conn:
        left = [d.name() for d in conn.listAllDomains(0)]
    if left:
        violations.append(f"leftover domains on h2: {left}")
    # the operator starts them again: then every invariant holds
    fault_lab.reset_placement()
    res = invariants.check(fault_lab, case.engine, 0, None, case.collect)
    res.violations = violations + res.violations
    if done != ["vm2", "vm1"]:
        res.failures.append(f"the migration ended before vm1 was destroyed: {rows}")
    failed: list[str] = []
    finish(figures, "VM destroyed while queued and while migrating", res, failed,
           jobs=[(r.vm_name, str(r.state), r.error) for r in rows], destroyed=done)
    case.engine.dispose()
    assert not failed


# --- the migration port dropped: the stall timeout aborts ------------------------------------

def test_dropped_migration_traffic_stalls_and_aborts(fault_lab: Any, tmp_path: Path,
                                                     figures: Figures) -> None:
    skew(fault_lab)
    case = Case(fault_lab, tmp_path, migrator_extra="bandwidth_mib_s = 16\nstall_timeout_s = 5\n")
    marks = invariants.beat_marks(fault_lab)
    m = case.migrator()
    [job] = m.runner.submit([MoveRequest("vm1", "h1", "h2")])
    rule: list[Any] = []

    def drop(_job: Any, progress: Any) -> None:
        if not rule and progress.bytes_processed > 4 * MIB:
            cm = dropped_migration_traffic(fault_lab.state.host("h2").address)
            cm.__enter__()
            rule.append(cm)

    t0 = time.monotonic()
    try:
        m.runner.run([job.id], drop)
    finally:
        for cm in rule:
            cm.__exit__(None, None, None)
        close(m)
    took_s = time.monotonic() - t0
    row = m.store.get(job.id)
    res = invariants.check(fault_lab, case.engine, 0, marks, case.collect)
    if not rule:
        res.failures.append(f"the migration ended before the drop: {row.state}")
    elif row.state is not JobState.ABORTED or "stalled" not in (row.error or ""):
        res.failures.append(f"expected aborted (stalled), got {row.state}: {row.error}")
    failed: list[str] = []
    finish(figures, "migration port dropped (iptables): stall timeout aborts", res, failed,
           job=f"{row.state}: {row.error}", seconds=round(took_s, 1))
    case.engine.dispose()
    assert not failed
