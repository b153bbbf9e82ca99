"""The web console in a real headless Chromium (Debian's chromium and chromedriver) against
a real `drs serve` on the lab: log in with a token, migrate a burning guest from the VMs
page (pick the target, confirm, watch it reach `succeeded`), apply a recommendation, put a
host into maintenance and back. Screenshots go to reports/console-e2e/ (kept after the run).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from libvirt_drs.config import load
from libvirt_drs.lab import heartbeat
from libvirt_drs.operations import tokens
from libvirt_drs.operations.caller import cli_caller
from libvirt_drs.operations.context import Cluster
from tests.e2e.test_serve_lab import _setup
from tests.service.serve_proc import ServeProcess, free_port, wait_for
from tests.support.browser import available as browser_available
from tests.support.browser import chromium

pytestmark = [pytest.mark.lab, pytest.mark.timeout(900)]
REPO = Path(__file__).resolve().parents[2]
SHOTS = REPO / "reports" / "console-e2e"


@pytest.fixture
def console(lab: Any, tmp_path: Path) -> Iterator[tuple[Any, str, str, Any]]:
    """(browser, console URL, operator token, the serve process) on the skewed lab."""
    if not browser_available():
        pytest.fail("chromium and chromium-driver are not installed (deploy/setup.sh does)")
    lab.reset_placement()
    config, engine = _setup(lab, tmp_path)
    text = config.read_text().replace('mode = "automatic"', 'mode = "manual"')
    config.write_text(text + "\n[collector]\ninterval_s = 2\ntimeout_s = 1.5\n")
    cfg = load(str(config))
    _, secret = tokens.create(Cluster(cfg, engine, actor="test"), cli_caller(), "e2e-operator",
                              "operator")
    web_port = free_port()
    serve = ServeProcess(config, free_port(), ["--balance-interval", "3600",
                                               "--first-balance-delay", "3600"],
                         tmp_path / "serve.log", web_port=web_port)
    browser = None
    try:
        assert wait_for(lambda: serve.get("/healthz")[0] == 200, 60), serve.log.read_text()
        assert f"console on http://127.0.0.1:{web_port}/" in serve.log.read_text()
        time.sleep(6)  # three collect cycles: every VM has a CPU rate
        browser = chromium(tmp_path / "chromium")
        yield browser, f"http://127.0.0.1:{web_port}", secret, serve
    finally:
        if browser is not None:
            browser.quit()
        serve.stop()
        engine.dispose()
        lab.reset_placement()


def _until(what: str, check: Callable[[], Any], timeout_s: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except Exception as exc:  # noqa: BLE001 - the page is still changing
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def _shot(browser: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SHOTS / f"{name}.png"))


def _hosts_running(lab: Any, vm: str) -> list[str]:
    """Where `virsh list` shows `vm` running, over every lab host."""
    found = []
    for h in lab.hosts:
        out = subprocess.run([shutil.which("virsh") or "virsh", "-c", h.uri, "list", "--name"],
                             capture_output=True, text=True, timeout=30, check=True).stdout
        if vm in out.split():
            found.append(h.name)
    return found


def test_console_migrate_apply_and_maintenance(lab: Any, console: tuple[Any, str, str, Any]) -> None:
    from selenium.webdriver.common.by import By  # noqa: PLC0415

    browser, url, secret, serve = console
    browser.get(url + "/")
    assert browser.current_url.endswith("/login")
    browser.find_element(By.ID, "token").send_keys(secret)
    browser.find_element(By.ID, "login").click()
    _until("the overview", lambda: browser.find_element(By.ID, "cpu-chart"))
    _until("the charts drawn", lambda: browser.execute_script(
        "return Chart.getChart('cpu-chart') && Chart.getChart('imbalance-chart') ? 1 : 0"))
    assert "token:e2e-operator" in browser.find_element(By.ID, "who").text
    assert secret not in browser.page_source
    _shot(browser, "overview")

    # the migrate dialog: a burning guest, the target, confirm, watch it succeed
    vm, source = "vm1", lab.where()["vm1"]
    target = next(h.name for h in lab.hosts if h.name != source)
    browser.get(url + "/vms")
    _until("the VM list", lambda: browser.find_element(
        By.CSS_SELECTOR, f'button[data-vm="{vm}"]')).click()
    radio = _until("the targets with their pre-checks", lambda: browser.find_element(
        By.CSS_SELECTOR, f'tr[data-target="{target}"] input[type=radio]:not([disabled])'), 90)
    assert "memory: pass" in browser.find_element(By.CSS_SELECTOR, f'tr[data-target="{target}"]').text
    radio.click()
    with heartbeat.ArrivalWatch({vm: lab.serial_log(vm)}) as beats:
        time.sleep(2.0)
        t0 = time.monotonic()
        browser.find_element(By.ID, "m-go").click()
        browser.switch_to.alert.accept()
        state = _until("the migration to succeed", lambda: browser.find_element(
            By.ID, "m-state").get_attribute("data-state") in ("succeeded", "failed", "aborted",
                                                                "skipped")
            and browser.find_element(By.ID, "m-state").get_attribute("data-state"), 180)
        time.sleep(3.0)
        gap_s = beats.max_gap_s(vm, t0)
    figures = browser.find_element(By.ID, "m-figures").text
    _shot(browser, "migrate")
    assert state == "succeeded", figures
    assert "done in" in figures and "downtime" in figures
    assert _hosts_running(lab, vm) == [target]
    # beats come every second: a pause is what lies beyond that period
    assert gap_s < 2.0, f"{vm}'s heartbeat paused {gap_s - 1:.2f} s beyond its 1 s period"
    assert heartbeat.wait_alive(lab.serial_log(vm), 30).problem is None

    # a recommendation, recorded and applied from its page (one move)
    browser.get(url + "/recommendations")
    _until("the page", lambda: browser.find_element(By.ID, "record")).click()
    button = _until("a recorded plan with a move", lambda: browser.find_element(
        By.CSS_SELECTOR, "button.apply-one"), 90)
    moved = button.get_attribute("data-vm")
    button.click()
    browser.switch_to.alert.accept()
    _until(f"the move of {moved} to succeed", lambda: browser.find_element(
        By.CSS_SELECTOR, f'tr[data-vm="{moved}"] td.state.succeeded'), 180)
    _shot(browser, "recommendations")

    # a host into maintenance and back, from the hosts page
    host = next(h.name for h in lab.hosts if h.name not in (source,))
    browser.get(url + "/hosts")
    _until("the hosts", lambda: browser.find_element(
        By.CSS_SELECTOR, f'button.enter[data-host="{host}"]')).click()
    browser.switch_to.alert.accept()
    _until(f"{host} in maintenance and empty", lambda: "in maintenance and empty" in
           browser.find_element(By.ID, "host-detail").text, 240)
    assert not [v for v, h in lab.where().items() if h == host]
    _shot(browser, "maintenance")
    browser.find_element(By.CSS_SELECTOR, f'button.exit[data-host="{host}"]').click()
    browser.switch_to.alert.accept()
    _until(f"{host} active again", lambda: browser.find_element(
        By.CSS_SELECTOR, f'tr[data-host="{host}"] td.state.active'), 30)
    for vm_name in lab.where():
        assert heartbeat.wait_alive(lab.serial_log(vm_name), 30).problem is None, vm_name
