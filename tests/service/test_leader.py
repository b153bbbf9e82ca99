"""Leader election on both backends: one leader, takeover after death within one lease."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text

from libvirt_drs.db import schema
from libvirt_drs.db.engine import make_engine
from libvirt_drs.service.leader import (
    PostgresAdvisoryLock,
    SqliteLease,
    advisory_key,
    current_holder,
    make_leader_lock,
)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def sqlite_engine(tmp_path) -> Iterator[Engine]:  # type: ignore[no-untyped-def]
    engine = make_engine(f"sqlite:///{tmp_path / 'drs.sqlite'}")
    schema.upgrade(engine)
    yield engine
    engine.dispose()


def test_sqlite_lease_one_leader_and_takeover_after_expiry(sqlite_engine: Engine) -> None:
    clock = Clock()
    a = SqliteLease(sqlite_engine, 30, holder="a", clock=clock, monotonic=clock)
    b = SqliteLease(sqlite_engine, 30, holder="b", clock=clock, monotonic=clock)
    assert a.poll() and not b.poll()
    assert current_holder(sqlite_engine) == ("a", 1020.0)
    clock.t += 10  # a renews every lease/3
    assert a.poll() and not b.poll()
    # a dies right after renewing: b polls every lease/6 and gets it within one lease
    died = clock.t
    while not b.poll():
        clock.t += b.poll_interval_s
        assert clock.t - died <= 30
    assert clock.t - died <= 2 / 3 * 30 + 30 / 6
    assert not a.is_leader  # a's own deadline passed: it would not act either
    assert not a.poll()  # and it cannot take the lease back
    assert current_holder(sqlite_engine)[0] == "b"


def test_sqlite_leader_that_cannot_renew_steps_down_at_its_own_expiry(
        sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    a = SqliteLease(sqlite_engine, 30, holder="a", clock=clock, monotonic=clock)
    assert a.poll()

    def broken() -> bool:
        from sqlalchemy.exc import OperationalError  # noqa: PLC0415
        raise OperationalError("UPDATE", {}, Exception("disk I/O error"))

    monkeypatch.setattr(a, "_take_or_renew", broken)
    clock.t += 10
    assert a.poll()  # still within its lease
    clock.t += 11
    assert not a.poll() and not a.is_leader


def test_sqlite_release_hands_over_at_once(sqlite_engine: Engine) -> None:
    clock = Clock()
    a = SqliteLease(sqlite_engine, 30, holder="a", clock=clock, monotonic=clock)
    b = SqliteLease(sqlite_engine, 30, holder="b", clock=clock, monotonic=clock)
    assert a.poll()
    a.release()
    assert not a.is_leader and b.poll()


def test_make_leader_lock_picks_the_backend(sqlite_engine: Engine) -> None:
    assert isinstance(make_leader_lock(sqlite_engine, 30), SqliteLease)


def test_advisory_key_is_stable_and_signed_64_bit() -> None:
    k = advisory_key("balancer")
    assert k == advisory_key("balancer") != advisory_key("other")
    assert -(2**63) <= k < 2**63


@pytest.mark.postgres
def test_postgres_one_leader_and_immediate_takeover_when_the_session_dies(
        fresh_postgres_url: str) -> None:
    e1, e2, admin = (make_engine(fresh_postgres_url) for _ in range(3))
    schema.upgrade(admin)
    try:
        a = PostgresAdvisoryLock(e1, 30, holder="a")
        b = PostgresAdvisoryLock(e2, 30, holder="b")
        assert a.poll() and a.is_leader
        assert not b.poll()
        assert a.poll()  # renew: the lock is seen in pg_locks
        assert current_holder(admin)[0] == "a"
        # the leader's session dies (crash, SIGKILL): the server frees the lock at once
        with admin.connect() as conn:
            pids = conn.execute(text(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 1 "
                "AND ((classid::bigint << 32) | objid::bigint) = :k"), {"k": a.key}).scalars().all()
            assert len(pids) == 1
            conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pids[0]})
        assert b.poll() and b.is_leader
        assert not a.poll() and not a.is_leader  # a notices its session is gone
        assert current_holder(admin)[0] == "b"
        b.release()
        assert a.poll()
    finally:
        for e in (e1, e2, admin):
            e.dispose()


@pytest.mark.postgres
def test_postgres_lock_session_has_an_idle_timeout(fresh_postgres_url: str) -> None:
    engine = make_engine(fresh_postgres_url)
    schema.upgrade(engine)
    try:
        a = PostgresAdvisoryLock(engine, 3, holder="a")
        assert a.poll()
        assert a._conn is not None
        value = a._conn.execute(text("SHOW idle_session_timeout")).scalar()
        assert value == "2s"
        a.release()
    finally:
        engine.dispose()
