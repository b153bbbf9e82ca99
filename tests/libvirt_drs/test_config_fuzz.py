"""Hostile config input, fuzzed: every generated file either parses or ends in one
clear line with exit code 2 (no traceback, nothing written)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from libvirt_drs import config
from libvirt_drs.cli import cli
from libvirt_drs.errors import ConfigError

SECTIONS = {
    "balancer": ["mode", "aggressiveness", "interval_s", "cpu_weight", "mem_weight", "window_s",
                 "max_moves_per_pass", "max_moves_per_host", "cpu_overcommit_ratio", "cooldown_s"],
    "collector": ["interval_s", "timeout_s", "raw_retention_days", "rollup_retention_days"],
    "migrator": ["max_outgoing_per_host", "max_incoming_per_host", "max_cluster", "bandwidth_mib_s",
                 "max_downtime_ms", "timeout_s", "stall_timeout_s", "copy_storage"],
    "service": ["metrics_listen", "lease_s"],
    "database": ["url"],
}
HOST_KEYS = ["name", "uri", "cpu_cores", "mem_mib", "group", "storage_group", "max_outgoing"]

odd_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
scalars = st.one_of(
    st.integers(min_value=-2**40, max_value=2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    odd_text,
)
values = st.one_of(scalars, st.lists(scalars, max_size=3))


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)  # JSON string escapes are valid TOML basic strings
    return "[" + ", ".join(toml_value(v) for v in value) + "]"


@st.composite
def config_texts(draw: st.DrawFn) -> str:
    lines: list[str] = []
    for section, keys in SECTIONS.items():
        if draw(st.booleans()):
            lines.append(f"[{section}]")
            for key in draw(st.lists(st.sampled_from(keys + ["bogus_key"]), max_size=4, unique=True)):
                lines.append(f"{key} = {toml_value(draw(values))}")
    for _ in range(draw(st.integers(0, 2))):
        lines.append("[[hosts]]")
        for key in draw(st.lists(st.sampled_from(HOST_KEYS), max_size=5, unique=True)):
            lines.append(f"{key} = {toml_value(draw(values))}")
    if draw(st.booleans()):
        lines.append("[[rules.anti_affinity]]")
        lines.append(f"vms = {toml_value(draw(st.lists(odd_text, max_size=3)))}")
    return "\n".join(lines) + "\n"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config_texts())
def test_parse_either_succeeds_or_raises_one_line_config_error(text: str) -> None:
    try:
        cfg = config.parse(text, "fuzz.toml")
    except ConfigError as exc:
        message = str(exc)
        assert message.startswith("fuzz.toml: ")
        assert "\n" not in message
    else:
        assert 1 <= cfg.balancer.policy.aggressiveness <= 5
        assert all(h.uri and h.name for h in cfg.hosts)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=config_texts())
def test_cli_on_fuzzed_config_exits_0_or_2_and_writes_nothing(tmp_path: Path, text: str) -> None:
    work = tmp_path / "w"
    work.mkdir(exist_ok=True)
    path = work / "drs.toml"
    path.write_text(text)
    result = CliRunner().invoke(cli, ["config", "check", "--config", str(path)])
    assert result.exit_code in (0, 2), result.output
    assert "Traceback" not in result.output
    if result.exit_code == 2:
        assert len(result.output.strip().splitlines()) == 1
    assert sorted(p.name for p in work.iterdir()) == ["drs.toml"]


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_crash(data: bytes) -> None:
    text = data.decode("utf-8", errors="replace")
    try:
        config.parse(text, "bytes.toml")
    except ConfigError as exc:
        assert "\n" not in str(exc)
