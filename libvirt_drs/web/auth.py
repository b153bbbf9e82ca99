"""Who is calling: an API token (`Authorization: Bearer drs_...`) or a console session.

A console login exchanges a token for a session (a random id in an HttpOnly, SameSite=
Strict cookie; the secret never reaches the page). Every state-changing request of a
session must carry the session's CSRF token (`X-CSRF-Token`, from the page's meta tag)
and come from this origin: a cross-site form post is refused. Revoking a token ends its
sessions on their next request.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from dataclasses import dataclass

from fastapi import HTTPException, Request

from libvirt_drs.db import tokens as token_store
from libvirt_drs.operations import tokens
from libvirt_drs.operations.caller import Caller, Role

SESSION_COOKIE = "drs_session"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


@dataclass(frozen=True)
class Session:
    token_name: str
    caller: Caller
    csrf: str
    expires_s: float


class Sessions:
    """Console sessions of this process (a restart logs everyone out)."""

    def __init__(self, ttl_s: float, clock=time.time) -> None:  # type: ignore[no-untyped-def]
        self.ttl_s = ttl_s
        self.clock = clock
        self._lock = threading.Lock()
        self._by_id: dict[str, Session] = {}

    def create(self, token_name: str, caller: Caller) -> tuple[str, Session]:
        sid = secrets.token_urlsafe(32)
        session = Session(token_name, caller, secrets.token_urlsafe(32), self.clock() + self.ttl_s)
        with self._lock:
            now = self.clock()
            for old in [k for k, s in self._by_id.items() if s.expires_s < now]:
                del self._by_id[old]
            self._by_id[sid] = session
        return sid, session

    def get(self, sid: str) -> Session | None:
        with self._lock:
            session = self._by_id.get(sid)
            if session is not None and session.expires_s < self.clock():
                del self._by_id[sid]
                return None
            return session

    def drop(self, sid: str) -> None:
        with self._lock:
            self._by_id.pop(sid, None)


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def session_of(request: Request) -> Session | None:
    sid = request.cookies.get(SESSION_COOKIE)
    if not sid:
        return None
    state = request.app.state
    session = state.sessions.get(sid)
    if session is None:
        return None
    if token_store.active(state.cluster.engine, session.token_name) is None:
        state.sessions.drop(sid)  # the token was revoked: so is its session
        return None
    return session


def same_origin(request: Request) -> bool:
    """An Origin (or, without it, a Referer) header naming another site is cross-site."""
    here = f"{request.url.scheme}://{request.url.netloc}"
    origin = request.headers.get("origin")
    if origin is not None:
        return origin == here
    referer = request.headers.get("referer")
    return referer is None or referer == here or referer.startswith(here + "/")


def current_caller(request: Request) -> Caller:
    """The authenticated caller, or 401/403. Bearer tokens need no CSRF token (no browser
    sends them by itself); sessions need it on every state-changing request."""
    secret = bearer(request)
    if secret is not None:
        caller = tokens.caller_for(request.app.state.cluster, secret)
        if caller is None:
            raise HTTPException(401, "invalid or revoked token")
        return caller
    session = session_of(request)
    if session is None:
        raise HTTPException(401, "authentication required: send Authorization: Bearer <token> "
                                 "(drs tokens create), or log in to the console")
    if request.method not in SAFE_METHODS:
        sent = request.headers.get(CSRF_HEADER, "")
        if not same_origin(request) or not hmac.compare_digest(sent, session.csrf):
            raise HTTPException(403, "cross-site request refused: this session's CSRF token "
                                     "is missing or wrong")
    return session.caller


def login(request: Request, secret: str) -> tuple[str, Session] | None:
    """A new session for the token `secret`, or None if it is not an active token."""
    caller = tokens.caller_for(request.app.state.cluster, secret)
    if caller is None:
        return None
    name = caller.name.removeprefix("token:")
    return request.app.state.sessions.create(name, Caller(caller.name, Role(caller.role)))
