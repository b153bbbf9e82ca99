from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from libvirt_drs.cli import cli


@pytest.fixture(autouse=True)
def empty_lab_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRS_LAB_ROOT", str(tmp_path / "labs"))


def test_bad_options_fail_in_one_line_before_starting_anything() -> None:
    result = CliRunner().invoke(cli, ["lab", "up", "--hosts", "2", "--vms", "3",
                                      "--placement", "h1,h2"])
    assert result.exit_code == 2
    assert "--placement" in result.output and "Traceback" not in result.output


def test_status_and_down_of_a_missing_lab_name_it() -> None:
    for args in (["lab", "status", "--name", "nope"], ["lab", "down", "--name", "nope"]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 2
        assert "no lab named 'nope'" in result.output
