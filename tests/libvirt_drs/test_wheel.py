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
import tarfile
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BARE = {"balancer", "collectors", "migrator", "migrations", "drs"}


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(sdist, wheel) from `python -m build`, as a release is built: the wheel is built from
    the sdist, so both carry everything."""
    # built from a copy: setuptools writes build/ and *.egg-info next to the sources
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    for name in ("libvirt_drs", "deploy", *sorted(BARE - {"drs"})):
        shutil.copytree(REPO / name, src / name, symlinks=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out),
                           str(src)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (sdist,) = out.glob("libvirt_drs-*.tar.gz")
    (built,) = out.glob("libvirt_drs-*.whl")
    return sdist, built


@pytest.fixture(scope="module")
def wheel(dist: tuple[Path, Path]) -> Path:
    return dist[1]


DEPLOY_FILES = ("deploy/drs.example.toml", "deploy/drs.service", "deploy/prometheus.yml",
                "deploy/drs-rules.yml", "deploy/grafana/dashboards/cluster-balance.json",
                "deploy/grafana/provisioning/datasources/drs.yaml", "deploy/lab/guest/drs-burn.c")


def test_sdist_carries_the_sources_and_deploy_files(dist: tuple[Path, Path]) -> None:
    with tarfile.open(dist[0]) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    for part in ("pyproject.toml", "libvirt_drs/cli/__init__.py", "libvirt_drs/balancer/planner.py",
                 *(f"libvirt_drs/{f}" for f in DEPLOY_FILES)):
        assert part in names, part


def _top_level(names: list[str]) -> set[str]:
    return {name.split("/")[0] for name in names}


def test_wheel_has_one_top_level_package_with_the_schema_revisions(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = _top_level(names)
    assert {t for t in tops if not t.endswith(".dist-info")} == {"libvirt_drs"}
    for part in ("balancer/scoring.py", "collectors/cycle.py", "migrator/executor.py",
                 "migrations/env.py", "migrations/script.py.mako",
                 "migrations/versions/0001_initial_schema.py", "web/templates/base.html",
                 "web/static/console.js", "web/static/charts.js", "web/static/pages/vms.js",
                 "web/static/vendor/chart.umd.min.js", *DEPLOY_FILES):
        assert f"libvirt_drs/{part}" in names, part


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

    # the deploy files are reachable from the installed copy alone
    drs = str(venv / "bin" / "drs")
    found = subprocess.run([drs, "files", "--json"], capture_output=True, text=True, env=env,
                           cwd=tmp_path, timeout=60)
    assert found.returncode == 0, found.stderr
    paths = json.loads(found.stdout)
    assert all(Path(p).exists() and p.startswith(str(site)) for p in paths.values()), paths
    assert Path(paths["systemd_unit"]).read_text().count("ExecStart=") == 1
    assert sorted(p.name for p in Path(paths["grafana_dashboards"]).glob("*.json")) == sorted(
        p.name for p in (REPO / "deploy" / "grafana" / "dashboards").glob("*.json"))
    check = subprocess.run([drs, "config", "check", "--config", paths["example_config"]],
                           capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert check.returncode == 0, check.stderr
    assert subprocess.run([drs, "--help"], capture_output=True, env=env, cwd=tmp_path,
                          timeout=60).returncode == 0
    copied = subprocess.run([drs, "files", "--copy-to", str(tmp_path / "etc")], capture_output=True,
                            text=True, env=env, cwd=tmp_path, timeout=60)
    assert copied.returncode == 0 and (tmp_path / "etc" / "drs.service").is_file()
    again = subprocess.run([drs, "files", "--copy-to", str(tmp_path / "etc")], capture_output=True,
                           text=True, env=env, cwd=tmp_path, timeout=60)
    assert again.returncode == 2 and "refusing to overwrite" in again.stderr
