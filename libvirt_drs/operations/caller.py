"""Who is asking, and what they may do.

Roles are ordered: a `viewer` reads; an `operator` also migrates, applies plans and
changes maintenance; an `admin` also manages API tokens. The local CLI acts as `admin`:
whoever can read the config (database URL, libvirt URIs) can do everything anyway.
"""

from __future__ import annotations

import enum
import os
import pwd
from dataclasses import dataclass

from libvirt_drs.operations.errors import Forbidden


class Role(enum.StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Role.VIEWER: 0, Role.OPERATOR: 1, Role.ADMIN: 2}


@dataclass(frozen=True)
class Caller:
    """The audit log's name for the caller ("cli:alice", "token:ci-bot") and its role."""

    name: str
    role: Role

    def may(self, needed: Role) -> bool:
        return self.role.rank >= needed.rank


def require(caller: Caller, needed: Role, what: str) -> None:
    """Refuse `what` unless the caller's role is at least `needed`."""
    if not caller.may(needed):
        raise Forbidden(f"{caller.name} ({caller.role}) may not {what}: needs the "
                        f"{needed} role")


def local_user() -> str:
    """The login behind this process: the real user, and who ran sudo if anyone did."""
    try:
        name = pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        name = f"uid{os.getuid()}"
    sudo = os.environ.get("SUDO_USER")
    return f"{sudo} (sudo as {name})" if sudo and sudo != name else name


def cli_caller() -> Caller:
    return Caller(f"cli:{local_user()}", Role.ADMIN)


SERVICE = Caller("drs-serve", Role.ADMIN)  # the service's own balance rounds
