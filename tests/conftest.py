"""Shared fixtures: databases (tests/support/db.py) and the lab cluster.

Keep the database import below when adding fixtures to this file.

`lab`: one lab cluster for every integration and end-to-end test. It runs 3 libvirtd
hosts and 6 burning guests, all on the first host (skewed).
Tests that move guests call `lab.reset_placement()` first (or last) so they can share it.
Labs take the first free block of addresses from DRS_TEST_LAB_BASE (default 127.0.0.101)
in steps of 10, so parallel sessions never share one; CI=true turns "cannot run the lab
here" from a skip into a failure.

Fresh machine: with CI=true (or DRS_TEST_FRESH_IMAGE=1) the session's guest image cache
($DRS_LAB_CACHE) is a new empty directory, so every CI run builds the guest kernel and
initramfs from nothing (download included), as a new user's machine would; the rest of the
session reuses that image and the directory is removed at the end.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import watchdog
from tests.support.db import db_engine, db_url, fresh_postgres_url  # noqa: F401
from tests.support.watchdog import pytest_runtest_protocol  # noqa: F401 (the hang watchdog)

LAB_BASE_ENV = "DRS_TEST_LAB_BASE"
DEFAULT_TEST_LAB_BASE = "127.0.0.101"
LAB_FIXTURES = {"lab", "make_lab"}
FRESH_IMAGE_ENV = "DRS_TEST_FRESH_IMAGE"
_fresh_cache: list[str] = []
CHECKOUT = Path(__file__).resolve().parent.parent
_untracked_at_start: list[set[str]] = []


def untracked_files() -> set[str] | None:
    """Files in the checkout that git neither tracks nor ignores (None outside a git checkout)."""
    try:
        out = subprocess.run(["git", "-C", str(CHECKOUT), "status", "--porcelain", "-z",
                              "--untracked-files=all"], capture_output=True, timeout=60, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return {e[3:].decode(errors="replace") for e in out.stdout.split(b"\0") if e.startswith(b"?? ")}


def fresh_image_wanted() -> bool:
    return (os.environ.get("CI", "").lower() == "true"
            or os.environ.get(FRESH_IMAGE_ENV, "") == "1")


def fresh_image_cache() -> str | None:
    """The empty guest image cache this session started with, if it has one."""
    return _fresh_cache[0] if _fresh_cache else None


def pytest_configure(config: pytest.Config) -> None:
    found = untracked_files()
    if found is not None and not hasattr(config, "workerinput"):
        _untracked_at_start.append(found)
    if fresh_image_wanted() and not _fresh_cache:
        from libvirt_drs.lab import image  # noqa: PLC0415

        path = tempfile.mkdtemp(prefix="drs-lab-cache-", dir="/var/tmp")
        os.environ[image.CACHE_ENV] = path
        _fresh_cache.append(path)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A test that writes into the checkout (a relative path, a report beside the code) fails
    the session: the files are named, so the test that wrote them can be found."""
    if not _untracked_at_start:
        return
    now = untracked_files() or set()
    new = sorted(now - _untracked_at_start[0])
    if new:
        print(f"\nthe tests left files in the checkout {CHECKOUT}: " + ", ".join(new[:20]))
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_unconfigure(config: pytest.Config) -> None:
    while _fresh_cache:
        shutil.rmtree(_fresh_cache.pop(), ignore_errors=True)


def lab_unavailable() -> str | None:
    """Why this machine cannot run the lab, or None if it can."""
    if os.geteuid() != 0:
        return "the lab needs root"
    try:
        import libvirt  # noqa: F401, PLC0415
    except ImportError:
        return "python module libvirt missing (pip install libvirt-python)"
    from libvirt_drs.lab import prereqs  # noqa: PLC0415

    gone = prereqs.missing()
    if gone:
        return "missing " + ", ".join(f"{n.what} ({n.package})" for n in gone)
    return None


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"the lab must run in CI but cannot: {reason}", pytrace=False)
    pytest.skip(f"lab cluster unavailable: {reason}")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test using a lab fixture carries the `lab` marker (so -m 'not lab' works).
    Tests marked `quiet_machine` run first, before the shared lab's guests (about 0.9 of
    this machine's 2 cores) or any other lab is up: they measure CPU contention."""
    for item in items:
        if LAB_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.lab)
    items.sort(key=lambda item: item.get_closest_marker("quiet_machine") is None)


def _base() -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(os.environ.get(LAB_BASE_ENV) or DEFAULT_TEST_LAB_BASE)


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The shared lab: a libvirt_drs.lab.Lab (hosts, vms, config_path, where(), migrate(),
    reset_placement(), cpu_pct(), connect(host), serial_log(vm))."""
    reason = lab_unavailable()
    if reason:
        _skip_or_fail(reason)
    from libvirt_drs.lab.pool import up_in_pool  # noqa: PLC0415

    the_lab = up_in_pool("pytest", str(_base()), config_dir=tmp_path_factory.mktemp("lab"))
    watchdog.track(the_lab)
    try:
        yield the_lab
    finally:
        watchdog.untrack(the_lab)
        the_lab.down()


@pytest.fixture(scope="session")
def make_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Any]]:
    """Start an extra small lab: make_lab(n_hosts=2, n_vms=1, storage="per-host", ...)
    (keyword arguments of libvirt_drs.lab.build). Each gets a free name and address block; those
    still running are taken down at the end of the session. Keep them small: boots cost CPU.
    """
    reason = lab_unavailable()
    if reason:
        _skip_or_fail(reason)
    from libvirt_drs.lab import state  # noqa: PLC0415
    from libvirt_drs.lab.pool import up_in_pool  # noqa: PLC0415

    started: list[Any] = []

    def make(**kwargs: Any) -> Any:
        kwargs.setdefault("n_hosts", 2)
        kwargs.setdefault("n_vms", 1)
        extra = up_in_pool("pytest", str(_base()), config_dir=tmp_path_factory.mktemp("lab"),
                           **kwargs)
        started.append(extra)
        watchdog.track(extra)
        return extra

    yield make
    for extra in started:
        watchdog.untrack(extra)
        if state.load(extra.name) is not None:
            extra.down()
