"""The REST API over the fake cluster: every operation, every role, the error codes, the
CSRF protection of console sessions, the audit log naming the token."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from libvirt_drs.db import audit
from libvirt_drs.operations import planning, tokens
from libvirt_drs.operations.caller import cli_caller
from libvirt_drs.web.app import create_app
from tests.support.fake_cluster import Lab


@pytest.fixture
def api(fake: Lab) -> Iterator[tuple[TestClient, dict[str, str]]]:
    secrets = {role: tokens.create(fake.cl, cli_caller(), f"{role}-bot", role)[1]
               for role in ("viewer", "operator")}
    app = create_app(fake.cl)
    with TestClient(app, base_url="http://drs.test") as client:
        yield client, secrets


def _h(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def _wait_job(client: TestClient, secret: str, job_id: int) -> dict:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        job = client.get(f"/api/v1/jobs/{job_id}", headers=_h(secret)).json()
        if job["state"] not in ("queued", "running"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} still {job['state']}")


def test_no_token_is_401_and_a_bad_one_too(api) -> None:  # type: ignore[no-untyped-def]
    client, _ = api
    assert client.get("/api/v1/status").status_code == 401
    r = client.get("/api/v1/status", headers=_h("drs_not-a-token"))
    assert r.status_code == 401 and r.json() == {"error": "invalid or revoked token"}


def test_openapi_lists_the_operations(api) -> None:  # type: ignore[no-untyped-def]
    client, _ = api
    paths = client.get("/api/v1/openapi.json").json()["paths"]
    for path in ("/api/v1/status", "/api/v1/vms", "/api/v1/vms/{name}/targets", "/api/v1/history",
                 "/api/v1/recommendation", "/api/v1/plans", "/api/v1/plans/{plan_id}/apply",
                 "/api/v1/migrations", "/api/v1/migrations/check", "/api/v1/jobs/{job_id}",
                 "/api/v1/hosts/{name}/maintenance", "/api/v1/groups/{group}/evacuate",
                 "/api/v1/audit", "/api/v1/placement", "/api/v1/replication",
                 "/api/v1/sites/{site}/failover", "/api/v1/sites/{site}/failover-tests",
                 "/api/v1/sites/{site}/failback"):
        assert path in paths, path


def test_a_viewer_reads_everything_and_changes_nothing(api, fake: Lab) -> None:  # type: ignore[no-untyped-def]
    client, s = api
    h = _h(s["viewer"])
    status = client.get("/api/v1/status", headers=h).json()
    assert [x["name"] for x in status["hosts"]] == ["h1", "h2", "h3"]
    assert status["hosts"][0]["cpu_cores"] == 1.0 and status["target"] is not None
    vms = client.get("/api/v1/vms?sort=cpu_cores&order=desc", headers=h).json()
    assert vms["total"] == 6 and vms["vms"][0]["name"] in ("vm1", "vm2")
    assert client.get("/api/v1/vms?search=vm6", headers=h).json()["total"] == 1
    assert client.get("/api/v1/vms/vm1", headers=h).json()["host"] == "h1"
    targets = client.get("/api/v1/vms/vm1/targets", headers=h).json()
    assert targets["source"] == "h1" and {t["host"] for t in targets["targets"]} == {"h2", "h3"}
    assert all(t["ok"] and len(t["checks"]) == 6 for t in targets["targets"])
    history = client.get("/api/v1/history", headers=h).json()
    assert set(history["hosts"]) == {"h1", "h2", "h3"} and len(history["times"]) == len(
        history["imbalance"])
    rec = client.get("/api/v1/recommendation", headers=h).json()
    assert rec["moves"] and rec["imbalance_after"] < rec["imbalance_before"]
    check = client.post("/api/v1/migrations/check", headers=h,
                        json={"vm": "vm1", "destination": "h2"}).json()
    assert check["ok"] is True
    place = client.post("/api/v1/placement", headers=h, json={"cpu_cores": 0.2, "mem_mib": 256})
    assert place.status_code == 200 and place.json()["host"] in ("h2", "h3")
    for method, path, body in (("post", "/api/v1/migrations", {"vm": "vm1", "destination": "h2"}),
                               ("post", "/api/v1/hosts/h1/maintenance", None),
                               ("delete", "/api/v1/hosts/h1/maintenance", None),
                               ("post", "/api/v1/groups/default/evacuate", {}),
                               ("post", "/api/v1/plans", None),
                               ("post", "/api/v1/sites/default/failover", {"mode": "test"}),
                               ("delete", "/api/v1/sites/default/failover-tests", None),
                               ("post", "/api/v1/sites/default/failback", None)):
        r = client.request(method, path, headers=h, json=body)
        assert r.status_code == 403 and "operator role" in r.json()["error"], (path, r.json())
    assert fake.hv.migrations == [] and client.get("/api/v1/jobs", headers=h).json() == []


def test_an_operator_migrates_and_the_audit_log_names_the_token(api, fake: Lab) -> None:  # type: ignore[no-untyped-def]
    client, s = api
    r = client.post("/api/v1/migrations", headers=_h(s["operator"]),
                    json={"vm": "vm1", "destination": "h2"})
    assert r.status_code == 202, r.json()
    job = _wait_job(client, s["operator"], r.json()["id"])
    assert job["state"] == "succeeded" and job["percent"] == 100.0 and job["downtime_ms"] == 42.0
    assert fake.hv.where("vm1") == ["h2"]
    events = client.get("/api/v1/audit?actor=token:operator-bot", headers=_h(s["viewer"])).json()
    assert [e["action"] for e in events][:1] == ["migration.requested"]


def test_error_codes(api, fake: Lab) -> None:  # type: ignore[no-untyped-def]
    client, s = api
    h = _h(s["operator"])
    r = client.post("/api/v1/migrations", headers=h, json={"vm": "nope", "destination": "h2"})
    assert r.status_code == 404 and r.json()["error"].startswith("VM 'nope' is not running")
    assert client.get("/api/v1/vms/nope", headers=h).status_code == 404
    assert client.get("/api/v1/plans/999", headers=h).status_code == 404
    assert client.get("/api/v1/jobs/999", headers=h).status_code == 404
    r = client.post("/api/v1/migrations", headers=h, json={"vm": "vm1", "destination": "h9"})
    assert r.status_code == 404 and "unknown host" in r.json()["error"]
    r = client.post("/api/v1/migrations", headers=h, json={"vm": "vm1"})
    assert r.status_code == 422 and r.json()["field"] == "destination"
    r = client.post("/api/v1/migrations", headers=h,
                    json={"vm": "vm1", "destination": "h2", "extra": 1})
    assert r.status_code == 422 and r.json()["field"] == "extra"
    r = client.post("/api/v1/placement", headers=h, json={"cpu_cores": -1, "mem_mib": 256})
    assert r.status_code == 422 and r.json()["field"] == "cpu_cores"
    r = client.post("/api/v1/migrations", headers=h, json={"vm": "vm1", "destination": "h1"})
    assert r.status_code == 422 and r.json()["field"] == "destination"
    fake.hv.hosts["h2"].free_mem_mib = 10
    r = client.post("/api/v1/migrations", headers=h, json={"vm": "vm1", "destination": "h2"})
    assert r.status_code == 409 and r.json()["reason"] == "not_enough_memory"
    r = client.post("/api/v1/groups/default/evacuate", headers=h, json={})
    assert r.status_code == 409 and r.json()["reason"] == "no_destination"
    assert fake.hv.migrations == []  # nothing half-done
    assert not fake.cl.migrator.store.in_maintenance("h1")
    r = client.post("/api/v1/sites/default/failover", headers=h, json={"mode": "planned"})
    assert r.status_code == 404 and "no protection policy has primary site" in r.json()["error"]
    r = client.post("/api/v1/sites/default/failover", headers=h, json={"mode": "later"})
    assert r.status_code == 422 and r.json()["field"] == "mode"
    assert client.get("/api/v1/replication", headers=h).json() == {"vms": []}


def test_plans_record_apply_one_then_all(api, fake: Lab) -> None:  # type: ignore[no-untyped-def]
    client, s = api
    h = _h(s["operator"])
    made = client.post("/api/v1/plans", headers=h)
    assert made.status_code == 201
    plan = made.json()
    assert plan["mode"] == "manual" and plan["moves"]
    first = plan["moves"][0]["vm"]
    r = client.post(f"/api/v1/plans/{plan['id']}/apply", headers=h, json={"vm": first})
    assert r.status_code == 202 and [j["vm"] for j in r.json()["jobs"]] == [first]
    _wait_job(client, s["operator"], r.json()["jobs"][0]["id"])
    r = client.post(f"/api/v1/plans/{plan['id']}/apply", headers=h, json={})
    assert r.status_code == 202 and first not in [j["vm"] for j in r.json()["jobs"]]
    for j in r.json()["jobs"]:
        assert _wait_job(client, s["operator"], j["id"])["state"] == "succeeded"
    again = client.post(f"/api/v1/plans/{plan['id']}/apply", headers=h, json={})
    assert again.status_code == 409 and again.json()["reason"] == "nothing_to_apply"
    shown = client.get(f"/api/v1/plans/{plan['id']}", headers=h).json()
    assert shown["applied_by"] == "token:operator-bot"
    assert all(m["job_state"] == "succeeded" for m in shown["moves"])


def test_maintenance_enter_then_exit(api, fake: Lab) -> None:  # type: ignore[no-untyped-def]
    client, s = api
    h = _h(s["operator"])
    r = client.post("/api/v1/hosts/h1/maintenance", headers=h)
    assert r.status_code == 202 and len(r.json()["jobs"]) == 6
    for j in r.json()["jobs"]:
        assert _wait_job(client, s["operator"], j["id"])["state"] == "succeeded"
    fake.sample()
    host = client.get("/api/v1/hosts/h1", headers=h).json()
    assert host["state"] == "maintenance" and host["vm_list"] == [] and host["left"] == []
    assert client.delete("/api/v1/hosts/h1/maintenance", headers=h).json()["state"] == "active"
    actions = [e.action for e in audit.events(fake.cl.engine, actor="token:operator-bot")]
    assert "host.maintenance" in actions and "host.active" in actions


def test_a_cross_site_form_post_with_the_session_cookie_is_refused(api, fake: Lab) -> None:  # type: ignore[no-untyped-def]
    client, s = api
    r = client.post("/login", data={"token": s["operator"]}, follow_redirects=False,
                    headers={"Origin": "http://drs.test"})
    assert r.status_code == 303 and "drs_session" in r.cookies
    assert "httponly" in r.headers["set-cookie"].lower() and "samesite=strict" in r.headers[
        "set-cookie"].lower()
    assert client.get("/api/v1/status").status_code == 200  # the session reads
    evil = client.post("/api/v1/migrations", data={"vm": "vm1", "destination": "h2"},
                       headers={"Origin": "https://evil.example"})
    assert evil.status_code == 403 and "cross-site" in evil.json()["error"]
    no_token = client.post("/api/v1/migrations", json={"vm": "vm1", "destination": "h2"})
    assert no_token.status_code == 403
    page = client.get("/vms")
    csrf = page.text.split('name="csrf-token" content="')[1].split('"')[0]
    ok = client.post("/api/v1/migrations", json={"vm": "vm1", "destination": "h2"},
                     headers={"X-CSRF-Token": csrf, "Origin": "http://drs.test"})
    assert ok.status_code == 202, ok.json()
    assert _wait_job(client, s["operator"], ok.json()["id"])["state"] == "succeeded"
    assert s["operator"] not in page.text  # the secret never reaches a page
    cross_login = client.post("/login", data={"token": s["operator"]},
                              headers={"Origin": "https://evil.example"}, follow_redirects=False)
    assert cross_login.status_code == 403


def test_revoking_a_token_ends_its_sessions(api, fake: Lab) -> None:  # type: ignore[no-untyped-def]
    client, s = api
    client.post("/login", data={"token": s["viewer"]}, headers={"Origin": "http://drs.test"})
    assert client.get("/api/v1/whoami").json() == {"name": "token:viewer-bot", "role": "viewer"}
    tokens.revoke(fake.cl, cli_caller(), "viewer-bot")
    assert client.get("/api/v1/whoami").status_code == 401
    assert client.get("/api/v1/status", headers=_h(s["viewer"])).status_code == 401
    page = client.get("/", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"] == "/login"


def test_pages_render_for_a_session(api, fake: Lab) -> None:  # type: ignore[no-untyped-def]
    client, s = api
    client.post("/login", data={"token": s["viewer"]}, headers={"Origin": "http://drs.test"})
    planning.record(fake.cl, planning.balance_plan(fake.cl), mode="manual", trigger="balance",
                    actor="drs-serve")
    for path in ("/", "/vms", "/recommendations", "/hosts", "/jobs", "/audit"):
        page = client.get(path)
        assert page.status_code == 200 and "libvirt-drs" in page.text, path
        assert "https://" not in page.text.replace("https://www.chartjs.org", ""), path  # no CDN
        assert page.headers["content-security-policy"].startswith("default-src 'self'")
    assert client.get("/static/vendor/chart.umd.min.js").status_code == 200
