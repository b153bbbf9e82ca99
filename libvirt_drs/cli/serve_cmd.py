"""`drs serve` (the daemon) and `drs demo` (the README's live demo on a lab)."""

from __future__ import annotations

import logging
import os
import sys
import threading
import time

import click

from libvirt_drs.cli.common import AppContext, pass_app
from libvirt_drs.config import LISTEN_EXPECTED, listen_ok
from libvirt_drs.errors import UserError

_seconds = click.FloatRange(min=0.05)


def _quiet_scheduler_logs(level: int = logging.INFO) -> None:
    """APScheduler logs every run (and every skipped run) itself; the service logs what
    matters in its own words, so APScheduler only gets to report errors."""
    logging.getLogger("apscheduler").setLevel(logging.ERROR)
    for name in ("libvirt_drs",):
        logger = logging.getLogger(name)
        if logger.getEffectiveLevel() > level or level > logging.INFO:
            logger.setLevel(level)


@click.command("serve")
@click.option("--mode", type=click.Choice(["automatic", "manual"]),
              help="Override balancer.mode: automatic executes plans, manual only records them.")
@click.option("--collect-interval", "collect_interval_s", type=_seconds, metavar="S",
              help="Seconds between collect cycles [default: collector.interval_s, 20].")
@click.option("--balance-interval", "balance_interval_s", type=_seconds, metavar="S",
              help="Seconds between balance rounds [default: balancer.interval_s, 300].")
@click.option("--retention-interval", "retention_interval_s", type=_seconds, metavar="S",
              help="Seconds between retention runs [default: service.retention_interval_s, 3600].")
@click.option("--observe-interval", "observe_interval_s", type=_seconds, default=5.0,
              show_default=True, metavar="S",
              help="Seconds between refreshes of the cluster and migration metrics.")
@click.option("--first-balance-delay", "first_balance_delay_s", type=click.FloatRange(min=0),
              metavar="S", help="Delay of the first balance round [default: 3 collect intervals, "
              "at most one balance interval].")
@click.option("--lease", "lease_s", type=_seconds, metavar="S",
              help="Leader lease period [default: service.lease_s, 30].")
@click.option("--grace", "shutdown_grace_s", type=click.FloatRange(min=0), metavar="S",
              help="SIGTERM grace period for running migrations [default: "
              "service.shutdown_grace_s, 60].")
@click.option("--metrics-listen", metavar="ADDR:PORT",
              help="Serve /metrics and /healthz here [default: service.metrics_listen, "
              "127.0.0.1:9177].")
@click.option("--web-listen", metavar="ADDR:PORT",
              help="Serve the web console and /api/v1 here [default: web.listen, "
                   "127.0.0.1:8080]; \"\" serves neither.")
@click.option("--collect-shard", metavar="I/N",
              help="Collect only the hosts with crc32(name) mod N == I, whether leading or not "
              "(several processes share collection).")
@click.option("--no-balance", is_flag=True,
              help="Collector-only process: never takes the leader lock, never balances.")
@click.option("--no-collect", is_flag=True,
              help="Balancer-only process (beside --collect-shard collectors): never collects.")
@pass_app
def serve(app: AppContext, mode: str | None, collect_interval_s: float | None,
          balance_interval_s: float | None, retention_interval_s: float | None,
          observe_interval_s: float, first_balance_delay_s: float | None, lease_s: float | None,
          shutdown_grace_s: float | None, metrics_listen: str | None, web_listen: str | None,
          collect_shard: str | None, no_balance: bool, no_collect: bool) -> None:
    """Run the service: collect, balance and retention on schedules, /metrics, leader election.

    One process per cluster balances (the leader, through a lock in the database); others
    on the same database stand by and take over within one lease period. SIGTERM stops
    scheduling, lets running migrations finish within the grace period, aborts the rest
    and exits 0.
    """
    from libvirt_drs.service.app import ServeOptions, Service, parse_shard  # noqa: PLC0415

    cfg = app.config
    if not cfg.hosts:
        raise UserError(f"{cfg.path}: hosts: no hosts configured, nothing to serve")
    if metrics_listen is not None:
        _check_listen(metrics_listen)
    if web_listen:
        _check_listen(web_listen, "--web-listen")
    opts = ServeOptions(
        mode=mode, collect_interval_s=collect_interval_s, balance_interval_s=balance_interval_s,
        retention_interval_s=retention_interval_s, observe_interval_s=observe_interval_s,
        first_balance_delay_s=first_balance_delay_s, lease_s=lease_s,
        shutdown_grace_s=shutdown_grace_s, metrics_listen=metrics_listen, web_listen=web_listen,
        shard=parse_shard(collect_shard) if collect_shard else None, balance=not no_balance,
        collect=not no_collect)
    if no_balance and no_collect:
        raise UserError("--no-balance and --no-collect together leave nothing to do")
    if no_balance and opts.shard is None and len(cfg.hosts) > 1:
        logging.getLogger("libvirt_drs.serve").warning(
            "--no-balance without --collect-shard: this process collects every host")
    _quiet_scheduler_logs()
    from libvirt_drs.db.engine import make_engine  # noqa: PLC0415

    engine = make_engine(cfg.database_url)
    try:
        service = Service(cfg, engine, opts)
    except OSError as exc:
        raise UserError(f"cannot start: {exc}") from None
    _exit_at_end_of_grace(service.stop_signal.event, service.cfg.service.shutdown_grace_s)
    try:
        service.run_until_signal()  # it logs what was aborted and what is left running
    except OSError as exc:  # e.g. the metrics port is taken
        raise UserError(f"metrics server on {service.cfg.service.metrics_listen}: {exc}") \
            from None
    finally:
        engine.dispose()
    # The orderly shutdown is done (jobs settled or recorded, database closed). Exit now
    # rather than through the interpreter's finalization: it closes any libvirt connection
    # still open from a job thread, and a close to a busy libvirtd can block until its
    # keepalive gives up (CI saw a 38 s hang after "stopped in 3.9 s"), past the grace
    # period and out of the watchdog's reach. A job thread still inside libvirt (an abort
    # that has not settled) leaves its row `running`; the next start reconciles it.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _exit_at_end_of_grace(stop: threading.Event, grace_s: float) -> None:
    """The grace period is a promise: whatever is still blocked when it ends (a libvirt
    call that does not return, a database that does not answer), the process exits then.
    Job rows left `running` are reconciled from libvirt by the next start."""

    from libvirt_drs.service.shutdown import exit_margin_s  # noqa: PLC0415

    def watchdog() -> None:
        stop.wait()
        # the orderly shutdown ends exit_margin_s before the grace period; this fires
        # half-way into that margin, so even a blocked exit stays within the period
        time.sleep(max(0.0, grace_s - exit_margin_s(grace_s) / 2))
        logging.getLogger("libvirt_drs.serve").warning(
            "grace period of %g s over with work still blocked: exiting now; the next start "
            "reconciles any migration job left running", grace_s)
        logging.shutdown()
        os._exit(0)

    threading.Thread(target=watchdog, name="grace-watchdog", daemon=True).start()


def _check_listen(value: str, option: str = "--metrics-listen") -> None:
    """The same check as service.metrics_listen and web.listen in the config."""
    if not listen_ok(value):
        raise UserError(f"{option} {value!r}: expected {LISTEN_EXPECTED}")


@click.command("demo")
@click.option("--name", default="demo", show_default=True, help="Lab name.")
@click.option("--hosts", "n_hosts", type=click.IntRange(2, 8), default=3, show_default=True,
              help="Lab hosts.")
@click.option("--vms", "n_vms", type=click.IntRange(2, 16), default=6, show_default=True,
              help="Lab guests, all started on the first host.")
@click.option("--collect-interval", "collect_interval_s", type=_seconds, default=2.0,
              show_default=True, metavar="S", help="Seconds between collect cycles.")
@click.option("--balance-interval", "balance_interval_s", type=_seconds, default=10.0,
              show_default=True, metavar="S", help="Seconds between balance rounds.")
@click.option("--max-rounds", type=click.IntRange(1, 50), default=8, show_default=True,
              help="Stop after this many balance rounds even if not converged.")
@click.option("--metrics-listen", default="127.0.0.1:9177", show_default=True,
              metavar="ADDR:PORT", help="Where /metrics is served while the demo runs.")
@click.option("--web-listen", default="127.0.0.1:8080", show_default=True, metavar="ADDR:PORT",
              help="Where the web console is served while the demo runs (\"\" for none).")
@click.option("--output", "report_path", metavar="PATH",
              help="Write the HTML report here (mode 0600) [default: reports/demo-<time>.html].")
@click.option("--base-address", default="127.0.0.91", show_default=True,
              help="Loopback address of the first lab host; the others follow.")
@click.option("--keep-lab", is_flag=True, help="Leave the lab running afterwards.")
@click.option("--plain", is_flag=True, help="Log lines instead of the live table.")
def demo(name: str, n_hosts: int, n_vms: int, collect_interval_s: float,
         balance_interval_s: float, max_rounds: int, metrics_listen: str, web_listen: str,
         report_path: str | None, base_address: str, keep_lab: bool, plain: bool) -> None:
    """The live demo: a skewed lab, `drs serve` in automatic mode, the cluster converging.

    Brings up a lab with every guest on the first host, serves it in automatic mode with
    short intervals while a table of host loads, imbalance and migrations refreshes, stops
    once the imbalance stayed under target (or after --max-rounds), prints the before/after
    summary and the path of an HTML report, and takes the lab down.
    """
    from libvirt_drs.lab.demo import DemoOptions, run_demo  # noqa: PLC0415

    _check_listen(metrics_listen)
    # the live table is the output; log lines would tear it (errors still show)
    _quiet_scheduler_logs(logging.INFO if plain else logging.ERROR)
    run_demo(DemoOptions(name=name, n_hosts=n_hosts, n_vms=n_vms,
                         collect_interval_s=collect_interval_s,
                         balance_interval_s=balance_interval_s, max_rounds=max_rounds,
                         metrics_listen=metrics_listen, web_listen=web_listen,
                         report_path=report_path,
                         base_address=base_address, keep_lab=keep_lab, live=not plain))


COMMANDS = (serve, demo)
