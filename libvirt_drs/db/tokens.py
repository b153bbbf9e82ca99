"""API tokens at the database edge: create (the secret is returned once), verify, list,
revoke. Only the SHA-256 of a secret is stored: the secrets are 32 random bytes, so a
fast hash is enough (no password to stretch), and a stolen table lets nobody in."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import Engine, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from libvirt_drs.db import audit
from libvirt_drs.db.models import ApiToken

PREFIX = "drs_"  # recognisable in a leaked paste, and by secret scanners


@dataclass(frozen=True)
class TokenRecord:
    id: int
    name: str
    role: str
    created_s: float
    created_by: str
    last_used_s: float | None
    revoked_s: float | None

    @property
    def active(self) -> bool:
        return self.revoked_s is None


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _record(r: ApiToken) -> TokenRecord:
    return TokenRecord(int(r.id), r.name, r.role, r.created_s, r.created_by, r.last_used_s,
                       r.revoked_s)


def create(engine: Engine, name: str, role: str, actor: str, now_s: float
           ) -> tuple[TokenRecord, str] | None:
    """A new token and its secret (shown once); None if `name` is taken."""
    secret = PREFIX + secrets.token_urlsafe(32)
    try:
        with Session(engine, expire_on_commit=False) as session, session.begin():
            row = ApiToken(name=name, role=role, secret_sha256=_digest(secret), created_s=now_s,
                           created_by=actor)
            session.add(row)
            session.flush()
            audit.add(session, now_s, actor, "token.created", f"token {name}", f"role {role}")
            return _record(row), secret
    except IntegrityError:
        return None


def verify(engine: Engine, secret: str, now_s: float) -> TokenRecord | None:
    """The active token whose secret this is (and note its use), or None."""
    if not secret.startswith(PREFIX) or len(secret) > 200:
        return None
    digest = _digest(secret)
    with Session(engine, expire_on_commit=False) as session, session.begin():
        row = session.scalars(select(ApiToken).where(ApiToken.secret_sha256 == digest)).first()
        # compare again in constant time: the index lookup is not what guards the secret
        if row is None or row.revoked_s is not None or not hmac.compare_digest(
                row.secret_sha256, digest):
            return None
        if row.last_used_s is None or now_s - row.last_used_s > 60:  # no write per request
            row.last_used_s = now_s
        return _record(row)


def active(engine: Engine, name: str) -> TokenRecord | None:
    """The token `name` if it exists and is not revoked (a console session checks it on
    every request, so revoking a token ends its sessions too)."""
    with Session(engine) as session:
        row = session.scalars(select(ApiToken).where(ApiToken.name == name,
                                                     ApiToken.revoked_s.is_(None))).first()
        return None if row is None else _record(row)


def tokens(engine: Engine) -> list[TokenRecord]:
    with Session(engine) as session:
        return [_record(r) for r in session.scalars(select(ApiToken).order_by(ApiToken.name))]


def revoke(engine: Engine, name: str, actor: str, now_s: float) -> bool:
    """Revoke the active token `name`; False if there is none."""
    with Session(engine) as session, session.begin():
        done = session.execute(update(ApiToken).where(ApiToken.name == name,
                                                      ApiToken.revoked_s.is_(None))
                               .values(revoked_s=now_s))
        if done.rowcount:  # type: ignore[attr-defined]
            audit.add(session, now_s, actor, "token.revoked", f"token {name}")
            return True
        return False
