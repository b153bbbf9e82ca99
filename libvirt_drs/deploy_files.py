"""The files an operator installs beside the package (they ship inside it, under
libvirt_drs/deploy): example config, systemd unit, Prometheus scrape config and alert
rules with their runbook, Grafana dashboards and provisioning. `drs files` lists and
copies them."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from libvirt_drs.errors import UserError

ROOT = Path(__file__).resolve().parent / "deploy"

# what `drs files` shows, in order: key -> path under ROOT
FILES = {
    "example_config": "drs.example.toml",
    "systemd_unit": "drs.service",
    "prometheus_config": "prometheus.yml",
    "alert_rules": "drs-rules.yml",
    "runbook": "runbook.md",
    "grafana_dashboards": "grafana/dashboards",
    "grafana_provisioning": "grafana/provisioning",
}


@dataclass(frozen=True)
class DeployFile:
    key: str
    path: Path

    @property
    def present(self) -> bool:
        return self.path.exists()


def deploy_files() -> list[DeployFile]:
    return [DeployFile(key, ROOT / rel) for key, rel in FILES.items()]


def copy_to(target: Path) -> list[Path]:
    """Copy every deploy file under `target` (created if missing); never overwrites."""
    target.mkdir(parents=True, exist_ok=True)
    planned: list[tuple[Path, Path]] = []
    for f in deploy_files():
        sources = sorted(p for p in f.path.rglob("*") if p.is_file()) if f.path.is_dir() else [f.path]
        for src in sources:
            planned.append((src, target / src.relative_to(ROOT)))
    clash = [str(dst) for _src, dst in planned if dst.exists() or dst.is_symlink()]
    if clash:
        raise UserError(f"{clash[0]} exists: refusing to overwrite"
                        + (f" (and {len(clash) - 1} more)" if len(clash) > 1 else "")
                        + "; copy into an empty directory")
    for src, dst in planned:
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)
    return [dst for _src, dst in planned]
