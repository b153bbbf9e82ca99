"""Deployment security: libvirt URIs pass through unchanged, metrics bind to 127.0.0.1 by
default, the systemd unit sandboxes the service, and `drs` runs as a non-root user."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from libvirt_drs.config import parse
from libvirt_drs.lab import config_out

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "deploy" / "drs.service"
URIS = [
    "qemu+ssh://drs@kvm1.example.org/system?keyfile=/var/lib/drs/.ssh/id_ed25519"
    "&known_hosts=/var/lib/drs/.ssh/known_hosts&no_verify=0",
    "qemu+tls://kvm2.example.org:16514/system?pkipath=/etc/pki/drs&no_verify=0",
    "qemu+ssh://[2001:db8::1]:2222/system?socket=/run/libvirt/libvirt-sock",
    "qemu:///system",
]


def test_libvirt_uris_pass_through_unchanged() -> None:
    hosts = "".join(f'[[hosts]]\nname = "h{i}"\nuri = "{u}"\n' for i, u in enumerate(URIS))
    cfg = parse(hosts, "uris.toml")
    assert [h.uri for h in cfg.hosts] == URIS
    # and both libvirt users (collector, migrator) open exactly that string
    import libvirt  # noqa: PLC0415

    from libvirt_drs.collectors.hypervisor import HostUnavailable  # noqa: PLC0415
    from libvirt_drs.collectors.libvirt_source import LibvirtSource  # noqa: PLC0415
    from libvirt_drs.migrator.hypervisor import HypervisorError  # noqa: PLC0415
    from libvirt_drs.migrator.libvirt_hv import LibvirtHypervisor  # noqa: PLC0415

    opened: list[str] = []

    def fake_open(uri: str) -> Any:
        opened.append(uri)
        raise libvirt.libvirtError("refused (test)")

    for h in cfg.hosts:
        with pytest.raises(HostUnavailable):
            LibvirtSource(h.name, h.uri, open_fn=fake_open).poll()
    hv = LibvirtHypervisor({h.name: h.uri for h in cfg.hosts}, open_fn=fake_open)
    for h in cfg.hosts:
        with pytest.raises(HypervisorError):
            hv.domain(h.name, "vm")
    assert opened == URIS + URIS


def test_metrics_listen_on_loopback_by_default() -> None:
    cfg = parse('[[hosts]]\nname = "h1"\nuri = "test:///default"\n', "m.toml")
    assert cfg.service.metrics_listen == "127.0.0.1:9177"
    assert cfg.service.metrics_host == "127.0.0.1"
    example = (REPO / "deploy" / "drs.example.toml").read_text()
    assert 'metrics_listen = "127.0.0.1:9177"' in example


def test_serve_binds_metrics_and_console_to_loopback_by_default(tmp_path: Path) -> None:
    """A real `drs serve` without --metrics-listen or --web-listen: it listens on
    127.0.0.1:9177 (metrics) and 127.0.0.1:8080 (console, API) only."""
    for port in (9177, 8080):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                pytest.skip(f"127.0.0.1:{port} is taken on this machine (another drs serve?)")
    from tests.security.common import driver_config  # noqa: PLC0415
    from tests.service.serve_proc import wait_for  # noqa: PLC0415

    config = driver_config(tmp_path)
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "libvirt_drs", "--config", str(config), "serve"],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        def listening() -> list[str]:
            out = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True).stdout
            return [ln.split()[3] for ln in out.splitlines() if f"pid={proc.pid}," in ln]

        assert wait_for(lambda: len(listening()) == 2, 60), (tmp_path / "serve.log").read_text()
        assert sorted(listening()) == ["127.0.0.1:8080", "127.0.0.1:9177"]
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        log.close()


def _unit_options() -> dict[str, list[str]]:
    opts: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "[")) and "=" in line:
            key, _, value = line.partition("=")
            opts.setdefault(key.strip(), []).append(value.strip())
    return opts


def test_systemd_unit_sandboxing() -> None:
    o = _unit_options()
    required = {
        "User": "drs", "Group": "drs", "NoNewPrivileges": "yes", "ProtectSystem": "strict",
        "ProtectHome": "yes", "PrivateTmp": "yes", "PrivateDevices": "yes", "UMask": "0077",
        "ProtectKernelTunables": "yes", "ProtectKernelModules": "yes",
        "ProtectControlGroups": "yes", "RestrictSUIDSGID": "yes", "LockPersonality": "yes",
        "RestrictRealtime": "yes", "RestrictNamespaces": "yes", "MemoryDenyWriteExecute": "yes",
    }
    for key, value in required.items():
        assert o.get(key) == [value], (key, o.get(key))
    assert o["CapabilityBoundingSet"] == [""] and o["AmbientCapabilities"] == [""]
    assert set(o["RestrictAddressFamilies"][0].split()) == {"AF_UNIX", "AF_INET", "AF_INET6"}
    assert "@system-service" in o["SystemCallFilter"]
    assert o["ReadWritePaths"] == ["/var/lib/drs"]
    assert int(o["TimeoutStopSec"][0]) > 60  # beyond the default shutdown grace
    if shutil.which("systemd-analyze"):
        r = subprocess.run(["systemd-analyze", "verify", str(UNIT)], capture_output=True,
                           text=True)
        assert "Unknown key" not in r.stderr, r.stderr


def _system_python() -> str | None:
    """An interpreter the drs user can execute with the venv's packages (same minor)."""
    for cand in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if Path(cand).exists():
            ver = subprocess.run([cand, "-c", "import sys; print(sys.version_info[:2])"],
                                 capture_output=True, text=True).stdout.strip()
            if ver == str(tuple(sys.version_info[:2])):
                return cand
    return None


def test_drs_runs_as_a_non_root_user(make_lab: Callable[..., Any]) -> None:
    """A system user `drs` (created here, left in place: useradd -r, no home, nologin)
    runs `db upgrade`, `collect --once` and `status` against a lab host: it needs no root
    (lab hosts listen on TCP without auth; production URIs use ssh/tls credentials)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to create the user")
    python = _system_python()
    if python is None:
        pytest.skip("no system python of the venv's version (the venv's lives under /root)")
    try:
        pwd.getpwnam("drs")
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
                        "--shell", "/usr/sbin/nologin", "drs"], check=True)
    lab = make_lab(n_hosts=1, n_vms=1, burn="5")
    state = Path(f"/var/tmp/drs-nonroot-{uuid.uuid4().hex[:8]}")
    state.mkdir(mode=0o700)
    try:
        shutil.chown(state, "drs", "drs")
        config = state / "drs.toml"
        config.write_text(config_out.render(lab.state, f"sqlite:///{state / 'drs.sqlite'}"))
        shutil.chown(config, "drs", "drs")
        config.chmod(0o600)
        site = next((REPO / ".venv" / "lib").glob("python3*/site-packages"))
        env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{REPO}:{site}", "HOME": str(state)}

        def drs(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(["runuser", "-u", "drs", "--", "env", *[f"{k}={v}" for k, v
                                   in env.items()], python, "-m", "libvirt_drs", "--config",
                                   str(config), *args], capture_output=True, text=True,
                                  cwd=state, timeout=180)

        whoami = subprocess.run(["runuser", "-u", "drs", "--", "id", "-u"], capture_output=True,
                                text=True, check=True).stdout.strip()
        assert whoami != "0"
        for args in (["db", "upgrade"], ["collect", "--once", "--prime-s", "1"]):
            r = drs(*args)
            assert r.returncode == 0, (args, r.stdout, r.stderr)
        r = drs("status", "--json")
        assert r.returncode == 0, r.stderr
        status = json.loads(r.stdout)
        assert [h["name"] for h in status["hosts"] if not h["stale"]] == ["h1"], status
        assert [v["name"] for v in status["vms"]] == ["vm1"], status
        db = state / "drs.sqlite"
        assert db.stat().st_uid == pwd.getpwnam("drs").pw_uid
        assert db.stat().st_mode & 0o777 == 0o600
    finally:
        shutil.rmtree(state, ignore_errors=True)
