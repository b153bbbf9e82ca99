"""Reports are written atomically, 0600, and never over a symlink, device or directory."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from libvirt_drs.cli import cli
from libvirt_drs.errors import UserError
from libvirt_drs.files import write_private


def test_new_and_regular_files_are_written_0600(tmp_path: Path) -> None:
    path = tmp_path / "r.html"
    write_private(path, "one")
    path.chmod(0o644)
    write_private(path, "two")
    assert path.read_text() == "two" and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.html"]  # no temp file left


def test_a_symlink_is_refused_and_left_alone(tmp_path: Path) -> None:
    target = tmp_path / "precious"
    target.write_text("keep")
    link = tmp_path / "r.html"
    link.symlink_to(target)
    with pytest.raises(UserError, match="is a symlink: refusing"):
        write_private(link, "x")
    assert link.is_symlink() and target.read_text() == "keep"


def test_devices_directories_and_impossible_paths_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="device or special file"):
        write_private(Path("/dev/null"), "x")
    with pytest.raises(UserError, match="is a directory"):
        write_private(tmp_path, "x")
    (tmp_path / "plain").write_text("a file, not a directory")
    with pytest.raises(UserError, match="cannot write"):
        write_private(tmp_path / "plain" / "sub" / "r.html", "x")
    assert write_private(tmp_path / "new" / "r.html", "x").read_text() == "x"
    if os.geteuid() != 0:  # root may write anywhere
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        with pytest.raises(UserError, match="cannot write"):
            write_private(ro / "r.html", "x")


def test_recommend_output_into_proc_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    db = tmp_path / "drs.sqlite"
    cfg = tmp_path / "drs.toml"
    cfg.write_text(f'[database]\nurl = "sqlite:///{db}"\n'
                   '[[hosts]]\nname = "h1"\nuri = "test:///default"\n')
    assert CliRunner().invoke(cli, ["--config", str(cfg), "db", "upgrade"]).exit_code == 0
    sampled = CliRunner().invoke(cli, ["--config", str(cfg), "collect", "--once", "--prime-s",
                                       "0.2"])
    assert sampled.exit_code == 0, sampled.output
    for target, why in (("/proc/x.html", "cannot write /proc/x.html"),
                        ("/dev/full", "/dev/full exists and is a device")):
        result = CliRunner().invoke(cli, ["--config", str(cfg), "recommend", "--format",
                                          "json", "--output", target])
        assert result.exit_code == 2, result.output
        assert why in result.output and len(result.output.splitlines()) == 1
        assert "Traceback" not in result.output
    ok = CliRunner().invoke(cli, ["--config", str(cfg), "recommend", "--format", "json",
                                  "--output", str(tmp_path / "r.json")])
    assert ok.exit_code == 0 and (tmp_path / "r.json").exists()
    assert stat.S_ISCHR(os.lstat("/dev/full").st_mode)
