"""SQLAlchemy 2.0 models: the database is the shared truth of the cluster.

Times are UNIX epoch seconds (float, `*_s` suffix): portable across SQLite and
PostgreSQL and cheap to window over. The schema is only ever created through the
Alembic revisions in migrations/; tests check that models and revisions agree.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from libvirt_drs.migrator.model import JobState

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Host(Base):
    """A libvirt host as configured and last seen by the collector."""

    __tablename__ = "hosts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    uri: Mapped[str] = mapped_column(String(1024))
    cpu_cores: Mapped[float | None] = mapped_column(Float)  # capacity in use (override or libvirt)
    mem_mib: Mapped[int | None] = mapped_column(BigInteger)
    cpu_model: Mapped[str | None] = mapped_column(String(255))
    cpu_xml: Mapped[str | None] = mapped_column(Text)  # host CPU definition (capabilities)
    host_group: Mapped[str] = mapped_column(String(255), default="default")
    storage_group: Mapped[str] = mapped_column(String(255), default="default")
    stale: Mapped[bool] = mapped_column(Boolean, default=True)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_seen_s: Mapped[float | None] = mapped_column(Float)


class HostStateRow(Base):
    """Operator-set host state (maintenance), separate from what the collector sees."""

    __tablename__ = "host_states"

    host_name: Mapped[str] = mapped_column(String(255), primary_key=True)
    state: Mapped[str] = mapped_column(String(32), default="active")
    reason: Mapped[str | None] = mapped_column(Text)
    changed_s: Mapped[float] = mapped_column(Float)


class Vm(Base):
    """A domain seen on some host; `host_id` is where it runs now, NULL once gone."""

    __tablename__ = "vms"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    name: Mapped[str] = mapped_column(String(255), index=True)
    host_id: Mapped[int | None] = mapped_column(ForeignKey("hosts.id", ondelete="SET NULL"))
    vcpus: Mapped[int] = mapped_column(Integer, default=1)
    mem_mib: Mapped[int] = mapped_column(BigInteger, default=0)  # configured (maximum) memory
    state: Mapped[str] = mapped_column(String(32), default="running")
    first_seen_s: Mapped[float] = mapped_column(Float)
    # last seen: the host's last_seen_s while present, gone_s once gone (revision 0002)
    gone_s: Mapped[float | None] = mapped_column(Float)
    last_migrated_s: Mapped[float | None] = mapped_column(Float)


class HostSample(Base):
    __tablename__ = "host_samples"
    __table_args__ = (Index("ix_host_samples_host_ts", "host_id", "ts_s"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    host_id: Mapped[int] = mapped_column(ForeignKey("hosts.id", ondelete="CASCADE"))
    ts_s: Mapped[float] = mapped_column(Float, index=True)
    cpu_cores_used: Mapped[float] = mapped_column(Float)
    cpu_load: Mapped[float] = mapped_column(Float)
    mem_used_mib: Mapped[float] = mapped_column(Float)
    mem_load: Mapped[float] = mapped_column(Float)
    vm_count: Mapped[int] = mapped_column(Integer)


class VmSample(Base):
    __tablename__ = "vm_samples"
    __table_args__ = (Index("ix_vm_samples_vm_ts", "vm_id", "ts_s"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    vm_id: Mapped[int] = mapped_column(ForeignKey("vms.id", ondelete="CASCADE"))
    host_id: Mapped[int] = mapped_column(ForeignKey("hosts.id", ondelete="CASCADE"))
    ts_s: Mapped[float] = mapped_column(Float, index=True)
    cpu_cores: Mapped[float] = mapped_column(Float)
    mem_used_mib: Mapped[float] = mapped_column(Float)
    # contention: cores its vCPUs waited for a host CPU; the guest's swap-in (None: unknown)
    cpu_wait_cores: Mapped[float | None] = mapped_column(Float, nullable=True)
    swap_in_kib_s: Mapped[float | None] = mapped_column(Float, nullable=True)


class HostSampleRollup(Base):
    """5-minute averages of host samples, kept longer than raw samples."""

    __tablename__ = "host_sample_rollups"
    __table_args__ = (UniqueConstraint("host_id", "bucket_s"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    host_id: Mapped[int] = mapped_column(ForeignKey("hosts.id", ondelete="CASCADE"))
    bucket_s: Mapped[float] = mapped_column(Float, index=True)
    cpu_load: Mapped[float] = mapped_column(Float)
    mem_load: Mapped[float] = mapped_column(Float)
    samples: Mapped[int] = mapped_column(Integer)


class VmSampleRollup(Base):
    """5-minute averages of VM samples, kept longer than raw samples."""

    __tablename__ = "vm_sample_rollups"
    __table_args__ = (UniqueConstraint("vm_id", "bucket_s"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    vm_id: Mapped[int] = mapped_column(ForeignKey("vms.id", ondelete="CASCADE"))
    host_id: Mapped[int] = mapped_column(ForeignKey("hosts.id", ondelete="CASCADE"))
    bucket_s: Mapped[float] = mapped_column(Float, index=True)
    cpu_cores: Mapped[float] = mapped_column(Float)
    mem_used_mib: Mapped[float] = mapped_column(Float)
    samples: Mapped[int] = mapped_column(Integer)


class PlanRow(Base):
    """One planner run: a recommendation (manual mode, dry run) or a plan being executed."""

    __tablename__ = "plans"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_s: Mapped[float] = mapped_column(Float, index=True)
    trigger: Mapped[str] = mapped_column(String(32))  # balance | recommend | maintenance | evacuate
    mode: Mapped[str] = mapped_column(String(32))  # automatic | manual | dry-run
    imbalance_before: Mapped[float] = mapped_column(Float)
    imbalance_after: Mapped[float] = mapped_column(Float)
    target: Mapped[float] = mapped_column(Float)
    plan_ms: Mapped[float] = mapped_column(Float)
    applied_s: Mapped[float | None] = mapped_column(Float)  # `drs plans apply`, the API
    applied_by: Mapped[str | None] = mapped_column(String(255))
    notes: Mapped[str] = mapped_column(Text, default="", server_default="")  # one per line


class PlannedMoveRow(Base):
    __tablename__ = "planned_moves"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("plans.id", ondelete="CASCADE"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    vm_name: Mapped[str] = mapped_column(String(255))
    source: Mapped[str] = mapped_column(String(255))
    destination: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(32))  # mandatory | balancing
    reason: Mapped[str] = mapped_column(Text)
    imbalance_before: Mapped[float] = mapped_column(Float)
    imbalance_after: Mapped[float] = mapped_column(Float)
    cost: Mapped[float] = mapped_column(Float)


class MigrationJob(Base):
    """One live migration: queued -> running -> succeeded | failed | aborted, or skipped."""

    __tablename__ = "migration_jobs"
    __table_args__ = (Index("ix_migration_jobs_state", "state", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    plan_id: Mapped[int | None] = mapped_column(ForeignKey("plans.id", ondelete="SET NULL"))
    vm_name: Mapped[str] = mapped_column(String(255))
    vm_uuid: Mapped[str | None] = mapped_column(String(36))
    source: Mapped[str] = mapped_column(String(255))
    destination: Mapped[str] = mapped_column(String(255))
    state: Mapped[str] = mapped_column(String(16), default=JobState.QUEUED.value)  # JobState
    copy_storage: Mapped[bool] = mapped_column(Boolean, default=False)
    owner: Mapped[str | None] = mapped_column(String(255))  # process that runs it (host:pid)
    queued_s: Mapped[float] = mapped_column(Float)
    started_s: Mapped[float | None] = mapped_column(Float)
    finished_s: Mapped[float | None] = mapped_column(Float)
    updated_s: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)
    bytes_processed: Mapped[int | None] = mapped_column(BigInteger)
    bytes_remaining: Mapped[int | None] = mapped_column(BigInteger)
    bytes_total: Mapped[int | None] = mapped_column(BigInteger)
    dirty_rate_bps: Mapped[float | None] = mapped_column(Float)
    iteration: Mapped[int | None] = mapped_column(Integer)
    downtime_ms: Mapped[float | None] = mapped_column(Float)
    total_ms: Mapped[float | None] = mapped_column(Float)


class AuditEvent(Base):
    """Every decision and action, for operators: who did what to which VM and why."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    ts_s: Mapped[float] = mapped_column(Float, index=True)
    actor: Mapped[str] = mapped_column(String(255), index=True)
    action: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(255))
    detail: Mapped[str] = mapped_column(Text, default="")


class ApiToken(Base):
    """A REST API / console credential: its name (the audit log's actor), role and the
    SHA-256 of its secret (the secret itself is shown once, never stored)."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    role: Mapped[str] = mapped_column(String(16))  # viewer | operator | admin
    secret_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_s: Mapped[float] = mapped_column(Float)
    created_by: Mapped[str] = mapped_column(String(255))
    last_used_s: Mapped[float | None] = mapped_column(Float)
    revoked_s: Mapped[float | None] = mapped_column(Float)


class HaHost(Base):
    """The HA view of a host that failed: suspected (not answering), fenced (powered off:
    its VMs are restarted elsewhere; not used again until cleared), fence_failed."""

    __tablename__ = "ha_hosts"

    host_name: Mapped[str] = mapped_column(String(255), primary_key=True)
    state: Mapped[str] = mapped_column(String(16))  # suspected | fenced | fence_failed
    since_s: Mapped[float] = mapped_column(Float)
    detail: Mapped[str] = mapped_column(Text, default="")
    fence_attempts: Mapped[int] = mapped_column(Integer, default=0)


class HaRestart(Base):
    """One VM of a fenced host to run elsewhere: waiting (no host fits yet), started
    (defined and started on `destination`), running, or failed."""

    __tablename__ = "ha_restarts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    vm_name: Mapped[str] = mapped_column(String(255))
    failed_host: Mapped[str] = mapped_column(String(255))
    destination: Mapped[str | None] = mapped_column(String(255))
    priority: Mapped[str] = mapped_column(String(8))
    state: Mapped[str] = mapped_column(String(16), index=True)
    detail: Mapped[str] = mapped_column(Text, default="")
    created_s: Mapped[float] = mapped_column(Float)
    updated_s: Mapped[float] = mapped_column(Float)
    running_s: Mapped[float | None] = mapped_column(Float)


class VmDefinition(Base):
    """The last domain XML of an HA-protected VM, with the host it was read from."""

    __tablename__ = "vm_definitions"

    vm_name: Mapped[str] = mapped_column(String(255), primary_key=True)
    host_name: Mapped[str] = mapped_column(String(255))
    xml: Mapped[str] = mapped_column(Text)
    xml_sha256: Mapped[str] = mapped_column(String(64))
    updated_s: Mapped[float] = mapped_column(Float)


class Lease(Base):
    """Leader lease (SQLite) and bookkeeping of who leads (both backends)."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(255))
    expires_s: Mapped[float] = mapped_column(Float)


class ReplicaPoint(Base):
    """A recovery point of a protected VM on the recovery site: complete and verified when
    the row exists (an interrupted transfer never writes one). `volumes` maps each disk
    target to its recovery-point file on `recovery_host`, a qcow2 whose backing file is the
    previous point's (the first point, kind full, has none)."""

    __tablename__ = "replica_points"
    __table_args__ = (UniqueConstraint("vm_name", "seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    vm_name: Mapped[str] = mapped_column(String(255), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    policy: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(16))  # full | incremental
    source_host: Mapped[str] = mapped_column(String(255))
    recovery_host: Mapped[str] = mapped_column(String(255))
    checkpoint: Mapped[str] = mapped_column(String(255))  # libvirt checkpoint on the domain
    taken_s: Mapped[float] = mapped_column(Float)  # the disks as they were then
    completed_s: Mapped[float] = mapped_column(Float)
    volumes: Mapped[str] = mapped_column(Text)  # JSON {"vda": "/path/vm1-vda-000002.qcow2"}
    bytes_sent: Mapped[int] = mapped_column(BigInteger)
    domain_xml: Mapped[str] = mapped_column(Text)  # the definition when the point was taken


class ReplicaState(Base):
    """Per protected VM: its last replication attempt and what went wrong."""

    __tablename__ = "replica_states"

    vm_name: Mapped[str] = mapped_column(String(255), primary_key=True)
    last_attempt_s: Mapped[float] = mapped_column(Float)
    failures: Mapped[int] = mapped_column(Integer, default=0)  # since the service began
    last_error: Mapped[str] = mapped_column(Text, default="")
    last_error_s: Mapped[float | None] = mapped_column(Float)
