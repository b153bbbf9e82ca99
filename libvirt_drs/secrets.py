"""Keep database passwords out of logs, reports, metrics and error messages."""

from __future__ import annotations

import re

_URL_PASSWORD = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@/\s]*)@")
_KV_PASSWORD = re.compile(r"(?i)(password\s*=\s*)('[^']*'|\"[^\"]*\"|\S+)")


def redact(text: str) -> str:
    """Replace the password in every URL (user:password@) and password=... pair with ***."""
    text = _URL_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
    return _KV_PASSWORD.sub(lambda m: f"{m.group(1)}***", text)
