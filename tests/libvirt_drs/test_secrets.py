from libvirt_drs.secrets import redact


def test_redacts_url_passwords() -> None:
    assert redact("postgresql+psycopg://drs:pa55@db:5432/drs") == "postgresql+psycopg://drs:***@db:5432/drs"
    assert redact("connect to postgresql://u:p%40ss@h/d failed") == "connect to postgresql://u:***@h/d failed"


def test_redacts_key_value_passwords() -> None:
    assert "s3cr3t" not in redact("host=db password=s3cr3t user=drs")
    assert "s3cr3t" not in redact("password='s3cr3t'")


def test_leaves_plain_uris_alone() -> None:
    assert redact("qemu+ssh://root@kvm-a1/system") == "qemu+ssh://root@kvm-a1/system"
    assert redact("qemu+tls://kvm-a2/system") == "qemu+tls://kvm-a2/system"
