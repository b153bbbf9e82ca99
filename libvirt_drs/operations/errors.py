"""Typed refusals of an operation. Each is a UserError (the CLI prints one line, exit 2);
the REST API maps them to HTTP status codes (web/api.py)."""

from __future__ import annotations

from libvirt_drs.errors import UserError


class NotFound(UserError):
    """An unknown VM, host, group, plan or job (HTTP 404)."""


class Conflict(UserError):
    """Refused by the cluster's state: limits, a failed pre-check, a plan already applied
    (HTTP 409). `reason` is the typed cause, such as `outgoing_limit` or `memory_fits`."""

    def __init__(self, message: str, reason: str = "conflict") -> None:
        super().__init__(message)
        self.reason = reason


class Forbidden(UserError):
    """The caller's role does not allow it (HTTP 403)."""


class Invalid(UserError):
    """A value out of range or contradicting another (HTTP 422). `field` names it."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field
