"""One line of an error's text, even when libvirt's message is empty."""

from __future__ import annotations

import pytest

from libvirt_drs import libvirt_errors
from libvirt_drs.libvirt_errors import first_line, libvirt_message


class FakeLibvirtError(Exception):
    def __init__(self, message: str | None, text: str = "") -> None:
        super().__init__(text)
        self.message = message

    def get_error_message(self) -> str | None:
        return self.message


@pytest.mark.parametrize(("text", "expected"), [
    ("Domain not found", "Domain not found"),
    ("\n  first\nsecond\n", "first"),
    ("", ""),
    ("  \n \n", ""),
])
def test_first_line_of_text(text: str, expected: str) -> None:
    assert first_line(text) == expected


def test_first_line_of_an_exception_falls_back_to_its_class() -> None:
    assert first_line(ConnectionError("")) == "ConnectionError"
    assert first_line(ConnectionError("\n")) == "ConnectionError"
    assert first_line(ConnectionError("refused\nmore")) == "refused"
    assert first_line("", fallback="nothing") == "nothing"


def test_libvirt_message_never_raises_and_is_never_empty() -> None:
    assert libvirt_message(FakeLibvirtError("operation failed\ndetail")) == "operation failed"
    assert libvirt_message(FakeLibvirtError(None, "from str()")) == "from str()"
    assert libvirt_message(FakeLibvirtError("")) == "FakeLibvirtError"  # was an IndexError
    assert libvirt_message(FakeLibvirtError(" \n ")) == "FakeLibvirtError"


def test_quiet_libvirt_registers_the_handler_once(monkeypatch: pytest.MonkeyPatch) -> None:
    libvirt = pytest.importorskip("libvirt")
    calls: list[object] = []
    monkeypatch.setattr(libvirt, "registerErrorHandler", lambda f, ctx: calls.append(f))
    monkeypatch.setattr(libvirt_errors, "_quiet", False)
    libvirt_errors.quiet_libvirt()
    libvirt_errors.quiet_libvirt()
    assert len(calls) == 1
