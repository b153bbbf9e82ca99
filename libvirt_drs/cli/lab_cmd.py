"""`drs lab up|down|status`: the local lab cluster (see docs/lab.md)."""

from __future__ import annotations

import time

import click
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from libvirt_drs.cli.common import console, json_option, print_json
from libvirt_drs.errors import UserError

name_option = click.option("--name", default="lab", show_default=True,
                           help="Lab name (several labs can coexist with distinct names).")


@click.group()
def lab() -> None:
    """Run a lab cluster: N libvirtd hosts on this machine with load-controlled guests."""


@lab.command("up")
@name_option
@click.option("--hosts", "n_hosts", type=int, default=3, show_default=True,
              help="libvirtd hosts, each in its own mount namespace on its own address.")
@click.option("--vms", "n_vms", type=int, default=6, show_default=True,
              help="Guests (TCG) burning CPU and dirtying memory.")
@click.option("--placement", default="skewed", show_default=True,
              help="skewed (all on the first host), even, or one host per VM: h1,h1,h2 / 1,1,2.")
@click.option("--burn", metavar="PCT[,PCT...]",
              help="CPU burn percent, one value or one per VM [default: 20,20,15,15,10,10].")
@click.option("--mem-mib", metavar="MIB[,MIB...]", help="Guest RAM per VM [default: 256].")
@click.option("--touch-mib", metavar="MIB[,MIB...]",
              help="Guest memory kept allocated and dirtied [default: 64].")
@click.option("--dirty-mib-s", type=int, default=4, show_default=True,
              help="MiB/s each guest re-dirties (migration dirty rate).")
@click.option("--disk-mib", type=int, default=0, show_default=True,
              help="Size of a qcow2 data disk per guest (0 = none).")
@click.option("--storage", type=click.Choice(["shared", "per-host"]), default="shared",
              show_default=True, help="One shared image directory, or one per host.")
@click.option("--base-address", default="127.0.0.11", show_default=True,
              help="Address of the first host; the others follow (.12, .13, ...).")
@click.option("--host-cpu-cores", type=float, default=1.0, show_default=True,
              help="Configured CPU capacity of each host in --config-out.")
@click.option("--host-mem-mib", type=int, default=None,
              help="Configured memory capacity of each host [default: 4/3 of all guest RAM].")
@click.option("--config-out", metavar="PATH", help="Write a ready drs config for the lab.")
@click.option("--tls-dir", default="", metavar="DIR",
              help="Hosts also listen for qemu+tls (port 16514) with these certificates: "
                   "DIR/cacert.pem and DIR/<address>/servercert.pem, serverkey.pem.")
@click.option("--boot-timeout", type=float, default=240.0, show_default=True,
              help="Seconds to wait for every guest's first heartbeat.")
@json_option
def up(name: str, n_hosts: int, n_vms: int, placement: str, burn: str | None,
       mem_mib: str | None, touch_mib: str | None, dirty_mib_s: int, disk_mib: int,
       storage: str, base_address: str, host_cpu_cores: float, host_mem_mib: int | None,
       config_out: str | None, tls_dir: str, boot_timeout: float, as_json: bool) -> None:
    """Start the lab: hosts in their own mount namespaces, guests burning CPU and memory."""
    from libvirt_drs.lab import Lab, build  # noqa: PLC0415

    spec = build(name=name, n_hosts=n_hosts, n_vms=n_vms, placement_text=placement, burn=burn,
                 mem=mem_mib, touch=touch_mib, dirty_mib_s=dirty_mib_s, disk_mib=disk_mib,
                 storage=storage, base_address=base_address, host_cpu_cores=host_cpu_cores,
                 host_mem_mib=host_mem_mib, tls_dir=tls_dir)
    t0 = time.monotonic()
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/"
                  "{task.total}"), TimeElapsedColumn(), console=console, transient=as_json,
                  disable=as_json) as bar:
        tasks: dict[str, TaskID] = {}

        def progress(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                label = {"hosts": "libvirtd hosts answering",
                         "guests": "guests booted (first heartbeat)"}.get(phase, phase)
                tasks[phase] = bar.add_task(label, total=total)
            bar.update(tasks[phase], completed=done)

        lab_ = Lab.up(spec, config_out_path=config_out, progress=progress,
                      boot_timeout_s=boot_timeout)
    if as_json:
        print_json(lab_.status())
        return
    console.print(f"lab [bold]{spec.name}[/] up in {time.monotonic() - t0:.1f} s: "
                  f"{len(spec.hosts)} hosts, {len(spec.vms)} guests")
    for h in lab_.hosts:
        console.print(f"  {h.name}  {h.uri}")
    if lab_.config_path:
        console.print(f"config written to {lab_.config_path}")
    console.print(f"take it down with: drs lab down --name {spec.name}")


@lab.command("down")
@name_option
@click.option("--all", "all_labs", is_flag=True, help="Take down every lab on this machine.")
@json_option
def down(name: str, all_labs: bool, as_json: bool) -> None:
    """Stop the lab's guests and libvirtds and remove its directory."""
    from libvirt_drs.lab import Lab, state  # noqa: PLC0415

    names = state.names() if all_labs else [name]
    for n in names:
        Lab.down_by_name(n)
        if not as_json:
            console.print(f"lab {n} down")
    if as_json:
        print_json({"down": names})


@lab.command("fence")
@name_option
@click.argument("host")
@json_option
def fence(name: str, host: str, as_json: bool) -> None:
    """Power HOST of the lab off (SIGKILL its libvirtd, virtlockd and guests): the lab's
    fence agent for HA. Exit 0 only when nothing of it runs any more."""
    from libvirt_drs.lab import Lab  # noqa: PLC0415

    Lab.load(name).kill_host(host)
    if as_json:
        print_json({"lab": name, "host": host, "off": True})
    else:
        console.print(f"lab {name}: {host} is off", highlight=False)


@lab.command("status")
@name_option
@json_option
def status(name: str, as_json: bool) -> None:
    """Show the lab's hosts and where each guest runs, with its last heartbeat."""
    from libvirt_drs.lab import Lab  # noqa: PLC0415

    st = Lab.load(name).status()
    if as_json:
        print_json(st)
        return
    hosts = Table(title=f"lab {st['name']} ({st['storage']} storage)")
    for col in ("host", "uri", "pid", "state", "guests"):
        hosts.add_column(col)
    for h in st["hosts"]:
        state_text = "up" if h["reachable"] else ("running, unreachable" if h["running"]
                                                  else "[red]down[/]")
        hosts.add_row(h["name"], h["uri"], str(h["pid"]), state_text, str(len(h["domains"])))
    console.print(hosts)
    vms = Table()
    for col in ("vm", "host", "home", "burn %", "mem MiB", "heartbeat", "age s"):
        vms.add_column(col)
    for v in st["vms"]:
        vms.add_row(v["name"], v["host"] or "[red]-[/]", v["home"], str(v["burn_pct"]),
                    str(v["mem_mib"]), str(v["heartbeat"]), str(v["heartbeat_age_s"]))
    console.print(vms)
    if st["config"]:
        console.print(f"config: {st['config']}")
    if not all(h["reachable"] for h in st["hosts"]):
        raise UserError(f"lab {name}: some hosts are down")
