"""Typed user-facing errors: the CLI prints them as one line and exits 2."""

from __future__ import annotations


class UserError(Exception):
    """An error caused by input (config, arguments, state) that the operator can fix.

    The message is printed as one line, never with a traceback.
    """

    exit_code = 2


class ConfigError(UserError):
    """A configuration value is missing or wrong: names the file, the key and what is expected."""

    def __init__(self, path: str, key: str, expected: str) -> None:
        self.path = path
        self.key = key
        self.expected = expected
        super().__init__(f"{path}: {key}: {expected}")
