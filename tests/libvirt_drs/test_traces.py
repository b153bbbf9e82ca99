"""Broken PlanetLab traces (libvirt_drs.traces): the message names the file and line, and the
CLI reports it in one line, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from libvirt_drs.cli import cli
from libvirt_drs.traces import TraceError, load_planetlab


def _trace(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    return tmp_path


def test_malformed_trace_line_names_file_and_line(tmp_path: Path) -> None:
    d = _trace(tmp_path, {"a": "1\n2\n", "b": "3\nx7\n"})
    with pytest.raises(TraceError, match=r"/b:2: expected an integer CPU percent 0..100, got 'x7'"):
        load_planetlab(d)


@pytest.mark.parametrize("files,message", [
    ({"a": "1\n2\n", "b": "3\n"}, "1 samples, expected 2"),
    ({"a": "101\n"}, "a:1: expected an integer"),
    ({}, "no trace files"),
])
def test_other_bad_traces(tmp_path: Path, files: dict[str, str], message: str) -> None:
    with pytest.raises(TraceError, match=message):
        load_planetlab(_trace(tmp_path, files))


def test_cli_reports_a_bad_trace_in_one_line(tmp_path: Path) -> None:
    d = _trace(tmp_path, {"a": "1\n2\n", "b": "3\n-4\n"})
    result = CliRunner().invoke(cli, ["simulate", "--trace", str(d), "--json"])
    assert result.exit_code == 2
    assert "b:2: expected an integer CPU percent" in result.output
    assert "Traceback" not in result.output
    missing = CliRunner().invoke(cli, ["simulate", "--trace", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "not a directory" in missing.output
