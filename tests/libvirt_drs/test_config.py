"""Configuration: parsing into frozen objects, and one-line errors for bad values."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from libvirt_drs import config
from libvirt_drs.cli import cli
from libvirt_drs.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "deploy" / "drs.example.toml"


def test_example_config_parses_every_section() -> None:
    cfg = config.load(str(EXAMPLE))
    assert [h.name for h in cfg.hosts] == ["kvm-a1", "kvm-a2", "kvm-b1"]
    assert cfg.hosts[0].uri == "qemu+ssh://root@kvm-a1/system"  # passed through unchanged
    assert cfg.hosts[0].cpu_cores == 32.0 and cfg.hosts[0].mem_mib == 262144
    assert cfg.hosts[2].group == "site-b" and cfg.hosts[2].storage_group == "san-b"
    assert cfg.balancer.policy.aggressiveness == 3 and cfg.balancer.mode == "manual"
    assert cfg.migrator.limits.max_cluster == 8
    assert cfg.rules.anti_affinity[0].vms == ("db-primary", "db-replica-1", "db-replica-2")
    assert {r.kind for r in cfg.rules.vm_host} == {"must", "should"}
    assert cfg.service.metrics_host == "127.0.0.1" and cfg.service.metrics_port == 9177
    assert cfg.database_url == f"sqlite:///{EXAMPLE.parent / 'drs.sqlite'}"


def test_config_objects_are_frozen() -> None:
    cfg = config.parse("", "x.toml")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.balancer.policy.aggressiveness = 5  # type: ignore[misc]


def test_defaults_when_empty(tmp_path: Path) -> None:
    cfg = config.parse("", str(tmp_path / "drs.toml"))
    assert cfg.database_url == f"sqlite:///{tmp_path / 'drs.sqlite'}"
    assert cfg.hosts == ()
    limits = cfg.migrator.limits
    assert limits.max_outgoing_per_host == 2 and limits.max_incoming_per_host == 2
    assert cfg.service.metrics_listen == "127.0.0.1:9177"


@pytest.mark.parametrize(
    ("text", "key", "expected"),
    [
        ('[balancer]\naggressiveness = "high"\n', "balancer.aggressiveness", "integer"),
        ("[balancer]\naggressiveness = 9\n", "balancer.aggressiveness", "1 to 5"),
        ("[balancer]\nagressiveness = 3\n", "balancer.agressiveness", "unknown key"),
        ('[[hosts]]\nname = "a"\n', "hosts[0].uri", "missing"),
        ('[[hosts]]\nname = "a"\nuri = "x"\n', "hosts[0].uri", "libvirt URI"),
        ('[[hosts]]\nname = "a"\nuri = "qemu:///system"\n[[hosts]]\nname = "a"\n'
         'uri = "qemu:///system"\n', "hosts[1].name", "duplicate"),
        ("[migrator]\nmax_cluster = 0\n", "migrator.max_cluster", ">= 1"),
        ("[collector]\ninterval_s = 5\ntimeout_s = 5\n", "collector.timeout_s", "< interval_s"),
        ("[migrator]\ncopy_storage = 1\n", "migrator.copy_storage", "true or false"),
        ('[service]\nmetrics_listen = "nowhere"\n', "service.metrics_listen", "address:port"),
        ('[[rules.vm_host]]\nkind = "maybe"\nvms = ["a"]\nhosts = ["h"]\n', "rules.vm_host[0].kind",
         "must_not"),
        ('[[rules.anti_affinity]]\nvms = ["a"]\n', "rules.anti_affinity[0].vms", "two"),
        ("hosts = 3\n", "hosts", "array of tables"),
        ("[database]\nurl = 5\n", "database.url", "string"),
        ("x = [", "<syntax>", "invalid TOML"),
    ],
)
def test_bad_values_name_file_key_and_expectation(text: str, key: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        config.parse(text, "bad.toml")
    message = str(info.value)
    assert message.startswith(f"bad.toml: {key}: ")
    assert expected in message
    assert "\n" not in message


def test_rule_naming_unknown_host_is_an_error() -> None:
    text = ('[[hosts]]\nname = "h1"\nuri = "qemu:///system"\n'
            '[[rules.vm_host]]\nname = "r"\nkind = "must"\nvms = ["v"]\nhosts = ["h9"]\n')
    with pytest.raises(ConfigError, match=r"rules.vm_host\[0\].hosts: rule 'r' names unknown host 'h9'"):
        config.parse(text, "bad.toml")


def test_config_path_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DRS_CONFIG", raising=False)
    assert config.config_path(None) == "/etc/drs/drs.toml"
    monkeypatch.setenv("DRS_CONFIG", "/etc/drs/env.toml")
    assert config.config_path(None) == "/etc/drs/env.toml"
    assert config.config_path("/x.toml") == "/x.toml"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[balancer]\nmode = 3\n', "balancer.mode"),
        ('[collector]\nunknown = 1\n', "collector.unknown"),
        ('[[hosts]]\nname = "h1"\n', "hosts[0].uri"),
    ],
)
def test_cli_prints_one_line_and_exits_2(tmp_path: Path, text: str, key: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    proc = subprocess.run([sys.executable, "-m", "libvirt_drs", "config", "check", "--config", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert key in lines[0] and str(path) in lines[0]
    assert "Traceback" not in proc.stderr


def test_config_check_on_example_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["config", "check", "--config", str(EXAMPLE)])
    assert result.exit_code == 0, result.output
    assert "OK" in result.output
    monkeypatch.setenv("DRS_CONFIG", str(EXAMPLE))
    result = runner.invoke(cli, ["config", "check", "--json"])
    assert result.exit_code == 0, result.output
    assert '"kvm-b1"' in result.output


def test_json_output_redacts_database_password(tmp_path: Path) -> None:
    path = tmp_path / "pg.toml"
    path.write_text('[database]\nurl = "postgresql+psycopg://drs:s3cret-pw@db.example/drs"\n'
                    '[[hosts]]\nname = "h1"\nuri = "test:///default"\n')
    result = CliRunner().invoke(cli, ["config", "check", "--json", "--config", str(path)])
    assert result.exit_code == 0
    assert "s3cret-pw" not in result.output
    result = CliRunner().invoke(cli, ["config", "check", "--config", str(path)])
    assert "s3cret-pw" not in result.output


def test_version_and_help() -> None:
    runner = CliRunner()
    assert runner.invoke(cli, ["--version"]).output.startswith("drs, version ")
    result = runner.invoke(cli, ["--help"])
    assert result.exit_code == 0 and "config" in result.output and "db" in result.output


@pytest.mark.parametrize(("value", "ok"), [("127.0.0.1:9177", True), ("[::1]:9177", True),
                                           ("127.0.0.1:0", False), ("x:65536", False),
                                           ("nowhere", False), (":9177", False)])
def test_one_listen_check_for_config_and_serve(value: str, ok: bool) -> None:
    from libvirt_drs.cli.serve_cmd import _check_listen  # noqa: PLC0415
    from libvirt_drs.errors import UserError  # noqa: PLC0415

    assert config.listen_ok(value) is ok
    if ok:
        _check_listen(value)
        assert config.parse(f'[service]\nmetrics_listen = "{value}"\n').service.metrics_listen
    else:
        with pytest.raises(UserError):
            _check_listen(value)
        with pytest.raises(ConfigError):
            config.parse(f'[service]\nmetrics_listen = "{value}"\n')


def test_settings_come_from_their_declarations() -> None:
    """Policy takes [migrator] copy_storage and bandwidth_mib_s; [[hosts]] overrides reach
    the admission limits."""
    cfg = config.parse('[[hosts]]\nname = "h1"\nuri = "qemu:///system"\nmax_outgoing = 3\n'
                       '[migrator]\ncopy_storage = true\nbandwidth_mib_s = 64\n'
                       '[balancer]\nmem_reserve_mib = 512\n')
    assert cfg.balancer.policy.copy_storage is True and cfg.balancer.policy.bandwidth_mib_s == 64.0
    assert cfg.migrator.copy_storage is True and cfg.migrator.options.bandwidth_mib_s == 64
    assert cfg.migrator.options.copy_storage is False  # per job, not the setting
    assert cfg.migrator.limits.outgoing_overrides == {"h1": 3}
    assert cfg.balancer.policy.mem_reserve_mib == 512.0


@pytest.mark.parametrize(("text", "key", "expected"), [
    ('[[hosts]]\nname = "a"\nuri = "qemu+tpc://h/system"\n', "hosts[0].uri", "transport"),
    ('[[hosts]]\nname = "a"\nuri = "kvm://h/system"\n', "hosts[0].uri", "libvirt URI"),
    ('[balancer]\nwindows = ["Mon-Fry 22:00-06:00"]\n', "balancer.windows", "Mon-Fri 22:00-06:00"),
    ('[balancer]\nwindows = "Mon 1:00-2:00"\n', "balancer.windows", "a list"),
    ('[balancer]\ntimezone = "Mars/Olympus"\n', "balancer.timezone", "IANA"),
])
def test_uri_schemes_windows_and_zones_are_checked(text: str, key: str, expected: str) -> None:
    with pytest.raises(ConfigError) as exc:
        config.parse(text, "t.toml")
    assert exc.value.key == key and expected in str(exc.value)


def test_libvirt_uri_forms_pass_unchanged() -> None:
    for uri in ("qemu:///system", "qemu+ssh://root@h/system?keyfile=/k", "qemu+tls://h/system",
                "test:///default", "qemu+unix:///system?socket=/run/x.sock", "esx://h/?no_verify=1"):
        cfg = config.parse(f'[[hosts]]\nname = "a"\nuri = "{uri}"\n', "t.toml")
        assert cfg.hosts[0].uri == uri


def test_windows_parse_into_the_balancer_config() -> None:
    cfg = config.parse('[balancer]\nwindows = ["Mon-Fri 22:00-06:00"]\ntimezone = "UTC"\n',
                       "t.toml")
    assert cfg.balancer.windows == ("Mon-Fri 22:00-06:00",)
    assert len(cfg.balancer.balancing_windows()) == 1


def test_config_check_refuses_a_config_without_hosts(tmp_path: Path) -> None:
    path = tmp_path / "drs.toml"
    path.write_text("[balancer]\nmode = \"manual\"\n")
    result = CliRunner().invoke(cli, ["config", "check", "--config", str(path)])
    assert result.exit_code == 2
    assert "no [[hosts]] configured" in result.output and len(result.output.splitlines()) == 1


@pytest.mark.parametrize("args", [["migrate", "vm1"], ["bogus"], ["jobs", "--limit", "x"],
                                  ["status", "--window", "0"], ["plans", "show", "one"]])
def test_usage_errors_are_one_line(args: list[str]) -> None:
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    assert len(result.output.splitlines()) == 1, result.output
    assert result.output.startswith("drs: error: ") and "--help" in result.output


def test_help_loads_no_heavy_module() -> None:
    """`drs --help` must start fast: the CLI imports SQLAlchemy, Alembic, numpy and libvirt
    only in the commands that use them (the start time itself is a benchmark figure)."""
    code = ("import sys; import libvirt_drs.cli; "
            "print(','.join(m for m in ('sqlalchemy', 'alembic', 'numpy', 'libvirt') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


REPLICATION_HOSTS = ('[[hosts]]\nname = "a1"\nuri = "qemu+tcp://a1/system"\ngroup = "site-a"\n'
                     '[[hosts]]\nname = "b1"\nuri = "qemu+tcp://b1/system"\ngroup = "site-b"\n')


def _policy(**over: str) -> str:
    keys = {"vms": '["web"]', "primary": '"site-a"', "recovery": '"site-b"',
            "recovery_dir": '"/var/lib/libvirt/drs-replicas"', "rpo_s": "30", **over}
    return REPLICATION_HOSTS + "[[replication.policies]]\n" + "".join(
        f"{k} = {v}\n" for k, v in keys.items() if v)


def test_replication_policy_parses() -> None:
    cfg = config.parse(_policy(), "x.toml")
    policy, = cfg.replication.policies
    assert (policy.vms, policy.primary, policy.recovery, policy.rpo_s) == \
        (("web",), "site-a", "site-b", 30.0)
    assert cfg.replication.policy_of("web") is policy and cfg.replication.nbd_port == 10809
    assert (policy.priority, policy.order) == ("medium", 0)


@pytest.mark.parametrize(("over", "message"), [
    ({"recovery": '"site-a"'}, "replication.policies[0].recovery: expected a host group other "
                               "than the primary 'site-a'"),
    ({"primary": '"site-x"'}, "replication.policies[0].primary: expected a host group (site-a, "
                              "site-b), got 'site-x'"),
    ({"recovery_dir": '"replicas"'}, "replication.policies[0].recovery_dir: expected an "
                                     "absolute path"),
    ({"vms": "[]"}, "replication.policies[0].vms: expected at least one VM name"),
    ({"rpo_s": "0"}, "replication.policies[0].rpo_s: expected a number > 0"),
    ({"priority": '"urgent"'}, "replication.policies[0].priority: expected high, medium or low"),
    ({"recovery": ""}, "replication.policies[0].recovery: missing"),
])
def test_replication_policy_errors_name_the_key(over: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        config.parse(_policy(**over), "x.toml")


def test_a_vm_in_two_policies_is_refused() -> None:
    text = _policy() + ("[[replication.policies]]\nvms = [\"web\"]\nprimary = \"site-a\"\n"
                        "recovery = \"site-b\"\nrecovery_dir = \"/r\"\n")
    with pytest.raises(ConfigError, match="'web' is already in protection policy 'policy-0'"):
        config.parse(text, "x.toml")
