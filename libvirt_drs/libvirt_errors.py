"""What every libvirt client here shares (collectors, migrator, lab, service): one-line
error text and silencing libvirt-python's own stderr printing.

libvirt is imported only when silencing, so the pure parts may use `first_line`.
"""

from __future__ import annotations

import threading
from typing import Protocol


def first_line(error: BaseException | str, fallback: str = "") -> str:
    """The first non-blank line of an error's text (logs and job rows take one line).

    An empty message gives `fallback`, or the exception's class name."""
    text = str(error)
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    if fallback:
        return fallback
    return type(error).__name__ if isinstance(error, BaseException) else ""


class _LibvirtError(Protocol):
    def get_error_message(self) -> str | None: ...


def libvirt_message(exc: _LibvirtError) -> str:
    """libvirt's own message of a libvirtError, one line; never empty."""
    text = exc.get_error_message() or str(exc)
    return first_line(text, fallback=type(exc).__name__)


_quiet_lock = threading.Lock()
_quiet = False


def quiet_libvirt() -> None:
    """libvirt-python prints every error to stderr by default; we raise and log them
    ourselves. Idempotent; call before the first connection."""
    global _quiet
    with _quiet_lock:
        if _quiet:
            return
        import libvirt  # noqa: PLC0415 - only clients of libvirt need it

        libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
        _quiet = True
