from __future__ import annotations

from pathlib import Path

from libvirt_drs import config
from libvirt_drs.lab import config_out, host
from libvirt_drs.lab.state import LabState


def _lab(storage: str) -> LabState:
    st = LabState(name="demo", dir="/var/tmp/drs-lab/demo", storage=storage, host_cpu_cores=1.0,
                  host_mem_mib=2048, kernel="/k", initrd="/i")
    st.hosts = [host.new_host(f"h{i}", f"127.0.0.{20 + i}", Path(st.dir)) for i in (1, 2, 3)]
    return st


def test_rendered_config_passes_config_check(tmp_path: Path) -> None:
    path = config_out.write(_lab("shared"), tmp_path / "lab.toml")
    cfg = config.load(str(path))
    assert [h.uri for h in cfg.hosts] == [f"qemu+tcp://127.0.0.{20 + i}/system" for i in (1, 2, 3)]
    assert {h.storage_group for h in cfg.hosts} == {"demo-shared"}
    assert all(h.cpu_cores == 1.0 and h.mem_mib == 2048 for h in cfg.hosts)
    assert cfg.database_url == "sqlite:////var/tmp/drs-lab/demo/drs.sqlite"
    assert cfg.migrator.copy_storage is False


def test_per_host_storage_gets_distinct_storage_groups(tmp_path: Path) -> None:
    path = config_out.write(_lab("per-host"), tmp_path / "lab.toml", "sqlite:///x.sqlite")
    cfg = config.load(str(path))
    assert len({h.storage_group for h in cfg.hosts}) == 3
    assert cfg.migrator.copy_storage is True


def test_host_configs_carry_address_and_uuid() -> None:
    h = host.new_host("h1", "127.0.0.11", Path("/x"))
    conf = host.libvirtd_conf(h.address, h.host_uuid)
    assert 'listen_addr = "127.0.0.11"' in conf and h.host_uuid in conf
    assert 'migration_address = "127.0.0.11"' in host.qemu_conf("127.0.0.11")
    inside = "/var/lib/libvirt/images/vm1.qcow2"
    assert h.outside(inside) == Path("/x/hosts/h1/lib/images/vm1.qcow2")
