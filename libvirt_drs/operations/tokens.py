"""API tokens as operations: create, list, revoke (admin only), and who a secret is."""

from __future__ import annotations

import re

from libvirt_drs.db import tokens as store
from libvirt_drs.operations.caller import Caller, Role, require
from libvirt_drs.operations.context import Cluster
from libvirt_drs.operations.errors import Conflict, Invalid, NotFound

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")


def create(cl: Cluster, caller: Caller, name: str, role: str) -> tuple[store.TokenRecord, str]:
    """A new token named `name` with `role`; the secret is returned here and never again."""
    require(caller, Role.ADMIN, "create API tokens")
    if not _NAME.match(name):
        raise Invalid(f"token name {name!r}: expected 1-64 letters, digits, _ . @ -", "name")
    if role not in {r.value for r in Role}:
        raise Invalid(f"role {role!r}: expected viewer, operator or admin", "role")
    made = store.create(cl.engine, name, role, caller.name, cl.clock())
    if made is None:
        raise Conflict(f"a token named {name!r} exists (revoke it first)", "name_taken")
    return made


def list_tokens(cl: Cluster, caller: Caller) -> list[store.TokenRecord]:
    require(caller, Role.ADMIN, "list API tokens")
    return store.tokens(cl.engine)


def revoke(cl: Cluster, caller: Caller, name: str) -> None:
    require(caller, Role.ADMIN, "revoke API tokens")
    if not store.revoke(cl.engine, name, caller.name, cl.clock()):
        raise NotFound(f"no active token named {name!r}")


def caller_for(cl: Cluster, secret: str) -> Caller | None:
    """The caller a presented secret stands for (`token:<name>` with its role), or None."""
    found = store.verify(cl.engine, secret, cl.clock())
    if found is None:
        return None
    return Caller(f"token:{found.name}", Role(found.role))
