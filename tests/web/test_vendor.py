"""The vendored Chart.js is the npm release it claims to be (its licence beside it)."""

from __future__ import annotations

import hashlib
from pathlib import Path

VENDOR = Path(__file__).resolve().parents[2] / "libvirt_drs" / "web" / "static" / "vendor"
CHART_JS_SHA256 = "87364cc2b2a76a6684929e7d6b80b18a897794db38400caff1fcf1791c6925d2"


def test_chart_js_is_the_recorded_release() -> None:
    data = (VENDOR / "chart.umd.min.js").read_bytes()
    assert hashlib.sha256(data).hexdigest() == CHART_JS_SHA256
    assert data.startswith(b"/*!\n * Chart.js v4.6.1")
    assert "MIT" in (VENDOR / "chart.js-LICENSE.md").read_text()
    assert CHART_JS_SHA256 in (VENDOR / "README.md").read_text()
