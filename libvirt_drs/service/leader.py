"""One active balancer per cluster: a leader lock held in the database.

PostgreSQL: a session-level advisory lock (`pg_try_advisory_lock`) on a dedicated
connection kept open for as long as we lead. The server drops the lock the moment that
session ends, so a dead leader (crash, SIGKILL) frees it at once and a standby polling
every `lease_s / 6` takes over within a fraction of the lease period. A leader cut off
by the network would keep its session open on the server, so the session sets
`idle_session_timeout` to 2/3 of the lease: the server ends it when the leader stops
polling. A broken dedicated connection, or no successful check for 2/3 of the lease,
means leadership is lost: we never assume we still hold it.

SQLite (one machine): a row in `leases` with an expiry. The leader renews it every
`lease_s / 3` and writes `expires_s = now + 2/3 * lease_s`, so one missed renewal is
tolerated; a standby polls every `lease_s / 6` and takes an expired row with one atomic
UPDATE. Worst case from the leader's death to takeover: 2/3 + 1/6 < 1 lease period.
A leader that could not renew considers itself deposed once its own expiry passed,
whatever the database says, so two leaders never act at the same time.

Both backends also record the holder in `leases` (bookkeeping for `drs status`).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from typing import Protocol

from sqlalchemy import Connection, Engine, delete, insert, select, text, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from libvirt_drs.db.models import Lease
from libvirt_drs.libvirt_errors import first_line
from libvirt_drs.migrator.runner import process_owner  # the same owner format as migration job rows

log = logging.getLogger(__name__)

LEASE_NAME = "balancer"


class LeaderLock(Protocol):
    """Try to become (or stay) leader; `poll()` is called every `poll_interval_s`."""

    holder: str

    @property
    def poll_interval_s(self) -> float:
        """How long to wait before the next poll (shorter while standing by)."""

    def poll(self) -> bool:
        """Acquire or renew; returns whether we lead now."""

    @property
    def is_leader(self) -> bool:
        """Whether we lead now, without touching the database (checked before every action)."""

    def release(self) -> None:
        """Give up leadership (shutdown); a no-op when not leading."""


def advisory_key(name: str) -> int:
    """Stable signed 64-bit key for pg_try_advisory_lock from the lease name."""
    digest = hashlib.sha256(f"libvirt-drs:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class PostgresAdvisoryLock:
    """Leader lock as a PostgreSQL session advisory lock on a dedicated connection."""

    def __init__(self, engine: Engine, lease_s: float, name: str = LEASE_NAME,
                 holder: str | None = None, clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.engine = engine
        self.name = name
        self.key = advisory_key(name)
        self.holder = holder or process_owner()
        self.lease_s = lease_s
        self.ttl_s = lease_s * 2 / 3
        self._clock = clock
        self._monotonic = monotonic
        self._conn: Connection | None = None
        self._leading = False
        self._valid_until = float("-inf")

    @property
    def poll_interval_s(self) -> float:
        return self.lease_s / 3 if self._leading else self.lease_s / 6

    @property
    def is_leader(self) -> bool:
        return self._leading and self._monotonic() < self._valid_until

    def poll(self) -> bool:
        started = self._monotonic()
        try:
            held = self._check_held() if self._leading else self._try_acquire()
        except SQLAlchemyError as exc:
            if self._leading:
                log.error("leader lock %s: lost the database session, stepping down: %s",
                          self.name, _first_line(exc))
            else:
                log.warning("leader lock %s: cannot reach the database: %s", self.name,
                            _first_line(exc))
            self._drop_connection()
            return False
        if held:
            self._leading = True
            self._valid_until = started + self.ttl_s
        elif self._leading:
            log.error("leader lock %s: advisory lock no longer held, stepping down", self.name)
            self._drop_connection()
        return self.is_leader

    def _connection(self) -> Connection:
        if self._conn is None:
            # Its own connection, outside the pool's churn: the lock lives as long as it does.
            conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            try:
                conn.execute(text("SELECT set_config('idle_session_timeout', :ms, false)"),
                             {"ms": str(max(1000, int(self.ttl_s * 1000)))})
            except SQLAlchemyError:
                log.warning("leader lock %s: server has no idle_session_timeout (PostgreSQL < 14);"
                            " a leader cut off by the network is only noticed by TCP keepalive",
                            self.name)
                conn.close()
                conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            self._conn = conn
        return self._conn

    def _try_acquire(self) -> bool:
        conn = self._connection()
        got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"),
                                {"k": self.key}).scalar())
        if got:
            _record_holder(conn, self.name, self.holder, self._clock() + self.lease_s)
        else:
            # Standing by: no need to keep a session open on the server meanwhile.
            self._drop_connection()
        return got

    def _check_held(self) -> bool:
        conn = self._connection()
        held = conn.execute(
            text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                 "AND pid = pg_backend_pid() AND objsubid = 1 "
                 "AND ((classid::bigint << 32) | objid::bigint) = :k"), {"k": self.key}).scalar()
        if held:
            _record_holder(conn, self.name, self.holder, self._clock() + self.lease_s)
        return bool(held)

    def _drop_connection(self) -> None:
        self._leading = False
        self._valid_until = float("-inf")
        if self._conn is not None:
            try:
                self._conn.invalidate()
                self._conn.close()
            except SQLAlchemyError:
                pass
            self._conn = None

    def release(self) -> None:
        if self._conn is None:
            return
        try:
            if self._leading:
                self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
                self._conn.execute(delete(Lease).where(Lease.name == self.name,
                                                       Lease.holder == self.holder))
        except SQLAlchemyError as exc:
            log.warning("leader lock %s: release failed (the server frees it with the session): "
                        "%s", self.name, _first_line(exc))
        finally:
            self._leading = False
            self._valid_until = float("-inf")
            self._conn.close()
            self._conn = None


class SqliteLease:
    """Leader lock as an expiring row in `leases` (single-machine SQLite deployments)."""

    def __init__(self, engine: Engine, lease_s: float, name: str = LEASE_NAME,
                 holder: str | None = None, clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.engine = engine
        self.name = name
        self.holder = holder or process_owner()
        self.lease_s = lease_s
        self.ttl_s = lease_s * 2 / 3
        self._clock = clock
        self._monotonic = monotonic
        self._valid_until = float("-inf")  # local monotonic deadline of our own lease

    @property
    def poll_interval_s(self) -> float:
        return self.lease_s / 3 if self._monotonic() < self._valid_until else self.lease_s / 6

    @property
    def is_leader(self) -> bool:
        return self._monotonic() < self._valid_until

    def poll(self) -> bool:
        was = self.is_leader
        started = self._monotonic()
        try:
            got = self._take_or_renew()
        except SQLAlchemyError as exc:
            log.warning("leader lease %s: database error: %s", self.name, _first_line(exc))
            got = False
        if got:
            self._valid_until = started + self.ttl_s
        elif was and not self.is_leader:
            log.error("leader lease %s: could not renew before expiry, stepping down", self.name)
        elif was:
            log.warning("leader lease %s: renewal failed; still valid for %.1f s", self.name,
                        self._valid_until - self._monotonic())
        return self.is_leader

    def _take_or_renew(self) -> bool:
        now = self._clock()
        with self.engine.begin() as conn:
            res = conn.execute(
                update(Lease)
                .where(Lease.name == self.name,
                       (Lease.holder == self.holder) | (Lease.expires_s < now))
                .values(holder=self.holder, expires_s=now + self.ttl_s))
            if res.rowcount == 1:
                return True
            exists = conn.execute(select(Lease.name).where(Lease.name == self.name)).first()
        if exists:
            return False
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(Lease).values(name=self.name, holder=self.holder,
                                                  expires_s=now + self.ttl_s))
            return True
        except IntegrityError:
            return False  # another process inserted it first

    def release(self) -> None:
        if not self.is_leader:
            return
        self._valid_until = float("-inf")
        try:
            with self.engine.begin() as conn:
                conn.execute(delete(Lease).where(Lease.name == self.name,
                                                 Lease.holder == self.holder))
        except SQLAlchemyError as exc:
            log.warning("leader lease %s: release failed (it expires by itself): %s", self.name,
                        _first_line(exc))


class AlwaysLeader:
    """For a single process that must act without a lock (tests, `drs demo` on SQLite)."""

    def __init__(self, holder: str = "local") -> None:
        self.holder = holder
        self.poll_interval_s = 1.0

    @property
    def is_leader(self) -> bool:
        return True

    def poll(self) -> bool:
        return True

    def release(self) -> None:
        return None


class NeverLeader:
    """A collector-only process (`drs serve --no-balance`): never contends for the lock."""

    def __init__(self, holder: str | None = None) -> None:
        self.holder = holder or process_owner()
        self.poll_interval_s = 60.0

    @property
    def is_leader(self) -> bool:
        return False

    def poll(self) -> bool:
        return False

    def release(self) -> None:
        return None


def make_leader_lock(engine: Engine, lease_s: float, holder: str | None = None) -> LeaderLock:
    """Advisory lock on PostgreSQL, lease row elsewhere."""
    if engine.dialect.name == "postgresql":
        return PostgresAdvisoryLock(engine, lease_s, holder=holder)
    return SqliteLease(engine, lease_s, holder=holder)


def current_holder(engine: Engine, name: str = LEASE_NAME) -> tuple[str, float] | None:
    """(holder, expires_s) as recorded in `leases`, for status displays."""
    with engine.connect() as conn:
        row = conn.execute(select(Lease.holder, Lease.expires_s).where(Lease.name == name)).first()
    return (row[0], row[1]) if row else None


def _record_holder(conn: Connection, name: str, holder: str, expires_s: float) -> None:
    """Bookkeeping only on PostgreSQL (the advisory lock is the truth)."""
    res = conn.execute(update(Lease).where(Lease.name == name)
                       .values(holder=holder, expires_s=expires_s))
    if res.rowcount == 0:
        try:
            conn.execute(insert(Lease).values(name=name, holder=holder, expires_s=expires_s))
        except IntegrityError:
            pass


def _first_line(exc: BaseException) -> str:
    """The driver's own message (SQLAlchemy wraps it in `orig`), one line."""
    return first_line(getattr(exc, "orig", None) or exc, fallback=exc.__class__.__name__)
