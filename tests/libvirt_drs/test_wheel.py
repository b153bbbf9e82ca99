"""The built wheel installs one top-level package (libvirt_drs) and works from a fresh venv:
the repository's top-level folders (balancer/, collectors/, migrator/, migrations/) are
installed as libvirt_drs.balancer and so on, and no module imports them by their bare name."""
from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BARE = {"balancer", "collectors", "migrator", "migrations", "drs"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # built from a copy: setuptools writes build/ and *.egg-info next to the sources
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    for name in ("libvirt_drs", *sorted(BARE - {"drs"})):
        shutil.copytree(REPO / name, src / name, symlinks=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(out), str(src)], check=True, capture_output=True, timeout=300)
    (built,) = out.glob("libvirt_drs-*.whl")
    return built


def _top_level(names: list[str]) -> set[str]:
    return {name.split("/")[0] for name in names}


def test_wheel_has_one_top_level_package_with_the_schema_revisions(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = _top_level(names)
    assert {t for t in tops if not t.endswith(".dist-info")} == {"libvirt_drs"}
    for part in ("balancer/scoring.py", "collectors/cycle.py", "migrator/executor.py",
                 "migrations/env.py", "migrations/script.py.mako",
                 "migrations/versions/0001_initial_schema.py"):
        assert f"libvirt_drs/{part}" in names


def test_no_module_imports_a_bare_top_level_folder(wheel: Path) -> None:
    bad = []
    with zipfile.ZipFile(wheel) as zf:
        for name in zf.namelist():
            if not name.endswith(".py"):
                continue
            for node in ast.walk(ast.parse(zf.read(name), name)):
                if isinstance(node, ast.Import):
                    roots = [alias.name.split(".")[0] for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    roots = [node.module.split(".")[0]]
                else:
                    continue
                bad += [f"{name}:{node.lineno} imports {root}" for root in roots if root in BARE]
    assert bad == []


def test_installed_into_a_fresh_venv_adds_one_package_and_runs(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                               check=True, capture_output=True, text=True).stdout.strip())
    before = set(os.listdir(site))
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
                    "--no-index", str(wheel)], check=True, capture_output=True, timeout=300)
    added = set(os.listdir(site)) - before
    assert {a for a in added if not a.endswith(".dist-info")} == {"libvirt_drs"}

    # the dependencies come from the test venv (PYTHONPATH skips its .pth files, so the
    # editable checkout of libvirt_drs is not visible): the installed copy must run alone
    env = {**os.environ, "PYTHONPATH": sysconfig.get_path("purelib")}
    where = subprocess.run([str(python), "-c", "import libvirt_drs.balancer.scoring as s; print(s.__file__)"],
                           check=True, capture_output=True, text=True, env=env, cwd=tmp_path).stdout
    assert where.startswith(str(site))
    config = tmp_path / "drs.toml"
    config.write_text('[database]\nurl = "sqlite:///drs.sqlite"\n')
    proc = subprocess.run([str(venv / "bin" / "drs"), "db", "upgrade", "--config", str(config)],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    current = subprocess.run([str(venv / "bin" / "drs"), "db", "current", "--config", str(config), "--json"],
                             capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert current.returncode == 0, current.stderr
    revisions = json.loads(current.stdout)
    assert revisions["current"] == revisions["head"] is not None
