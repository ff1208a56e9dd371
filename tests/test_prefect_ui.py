"""The operator's path through the Prefect UI, in a real headless browser (Debian's chromium and
chromium-driver, driven by selenium) against a real `prefect server` and `posttrain serve`:

open the full-iteration deployment, submit a tiny-profile run through its form, wait for
Completed, find the iteration's markdown artifact with the MLflow link; then submit rerun-stage
with that run's Prefect flow-run id and see it complete with the upstream stages shown as Reused.
Screenshots of each page land in the test's tmp dir (ui-*.png).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import latest_iteration, mlflow_client, workspace_env

pytestmark = pytest.mark.e2e
CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _api(base: str, path: str, body: dict | None = None):
    req = urllib.request.Request(f"{base}/api{path}", data=json.dumps(body).encode() if body is not None else None,
                                 headers={"content-type": "application/json"}, method="POST" if body is not None else "GET")
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def _wait(what: str, check, timeout: float, every: float = 2.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        got = check()
        if got:
            return got
        time.sleep(every)
    raise TimeoutError(f"{what}: not within {timeout:.0f} s")


@pytest.fixture
def ui(tiny_ws, tmp_path):
    """(Prefect base URL, workspace): a Prefect server on 127.0.0.1 and `posttrain serve` on the
    tiny workspace, both stopped afterwards."""
    if not (Path(CHROMIUM).exists() and Path(DRIVER).exists()):
        if os.environ.get("CI"):
            pytest.fail("chromium and chromedriver are missing: scripts/install.sh installs them (apt-get, as root)")
        pytest.skip("no chromium/chromedriver: sudo apt-get install -y chromium chromium-driver")
    ws, _, _ = tiny_ws
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**workspace_env(ws), "PREFECT_HOME": str(tmp_path / "prefect-server"), "PREFECT_API_URL": f"{base}/api",
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    procs = [subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port",
                               str(port)], cwd=ws, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)]
    try:
        _wait("prefect server health", lambda: _ping(f"{base}/api/health"), 120)
        log = open(tmp_path / "serve.log", "w")
        procs.append(subprocess.Popen([sys.executable, "-m", "posttrain", "serve", "--profile", "tiny"], cwd=ws, env=env,
                                      stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        _wait("both deployments registered",
              lambda: {d["name"] for d in _api(base, "/deployments/filter", {})} >= {"full-iteration", "rerun-stage"}, 120)
        yield base, ws, tmp_path
    finally:
        for p in reversed(procs):
            os.killpg(p.pid, signal.SIGTERM)
            p.wait(timeout=60)


def _ping(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=2).read()
        return True
    except OSError:
        return False


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    # No background networking: this machine reaches nothing but 127.0.0.1.
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1600,1100", f"--user-data-dir={tmp_path / 'chromium'}"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    driver.implicitly_wait(10)
    yield driver
    driver.quit()
    shutil.rmtree(tmp_path / "chromium", ignore_errors=True)


class Page:
    """What a person does on the Prefect UI: click what they read, fill the field under a label."""

    def __init__(self, driver, base: str, shots: Path):
        self.d, self.base, self.shots = driver, base, shots

    def open(self, path: str) -> None:
        self.d.get(self.base + path)

    def click(self, text: str, tag: str = "*") -> None:
        from selenium.common.exceptions import ElementClickInterceptedException, StaleElementReferenceException
        from selenium.webdriver.common.by import By

        for _ in range(20):  # a toast sliding in covers, then re-renders, its own button for a moment
            el = self.d.find_element(By.XPATH, f"//{tag}[normalize-space()='{text}']")
            try:
                self.d.execute_script("arguments[0].scrollIntoView({block: 'center'});", el)  # as a person scrolls
                return el.click()
            except (ElementClickInterceptedException, StaleElementReferenceException):
                time.sleep(0.5)
        raise AssertionError(f"could not click '{text}' on {self.d.current_url}: {self.shot('unclickable')}")

    def field(self, label: str):
        """The input, select or textarea of the parameter form under the label `label`."""
        from selenium.webdriver.common.by import By

        return self.d.find_element(By.XPATH, f"//label[@for and normalize-space()='{label}']"
                                             "/following::*[self::textarea or self::select or self::input][1]")

    def text(self) -> str:
        from selenium.webdriver.common.by import By

        return self.d.find_element(By.TAG_NAME, "body").text

    def state(self) -> str:
        """The flow run page's state badge ("Running", "Completed", ...)."""
        from selenium.webdriver.common.by import By

        badges = self.d.find_elements(By.CSS_SELECTOR, ".state-badge")
        return badges[0].text.strip() if badges else ""

    def shot(self, name: str) -> Path:
        path = self.shots / f"ui-{name}.png"
        self.d.save_screenshot(str(path))
        return path

    def run_links(self) -> set[str]:
        from selenium.webdriver.common.by import By

        return {a.get_attribute("href") for a in self.d.find_elements(By.CSS_SELECTOR, "a[href*='/runs/flow-run/']")}

    def submit_custom_run(self, deployment: str, fill) -> str:
        """Deployments -> `deployment` -> Run -> Custom run, `fill(self)`, Submit, then the new run
        in the deployment's run list; its flow run id, from the run page's URL."""
        from selenium.webdriver.support.ui import WebDriverWait

        self.open("/deployments")
        self.click(deployment, "a")
        time.sleep(2)
        before = self.run_links()
        self.click("Run", "button")
        self.click("Custom run")
        WebDriverWait(self.d, 30).until(lambda d: "/run" in d.current_url)
        fill(self)
        self.shot(f"{deployment}-form")
        self.click("Submit", "button")
        new = _wait("the submitted run in the deployment's list", lambda: self.run_links() - before, 60)
        self.d.get(sorted(new)[0])
        WebDriverWait(self.d, 30).until(lambda d: "/runs/flow-run/" in d.current_url)
        return self.d.current_url.split("/runs/flow-run/")[1].split("?")[0]

    def wait_final(self, flow_run: str, timeout: float) -> str:
        def final():
            self.open(f"/runs/flow-run/{flow_run}")
            time.sleep(2)  # the page fills in after the route loads
            state = self.state()
            return state if state in ("Completed", "Failed", "Crashed", "Cancelled") else ""
        return _wait(f"flow run {flow_run} to finish", final, timeout, every=5)


def test_operator_runs_and_reruns_an_iteration_from_the_prefect_ui(ui, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    base, ws, tmp = ui
    page = Page(browser, base, tmp)

    def tiny(p):
        Select(p.field("profile (Optional)")).select_by_visible_text("tiny")

    run_id = page.submit_custom_run("full-iteration", tiny)
    assert page.wait_final(run_id, 600) == "Completed", (tmp / "serve.log").read_text()[-3000:]
    page.shot("full-iteration-completed")
    client = mlflow_client(ws)
    it = latest_iteration(client)
    assert it.data.tags["prefect_flow_run_id"] == run_id and it.info.status == "FINISHED"
    assert {f"stage.{s}.run_id" for s in ("sft", "reason", "safety", "evaluate.final")} <= set(it.data.tags)

    page.click("Artifacts")
    card = browser.find_element(By.XPATH, f"//a[contains(normalize-space(), 'iteration-{it.info.run_id}')]")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", card)
    page.shot("full-iteration-artifacts")
    card.click()
    WebDriverWait(browser, 30).until(lambda d: "/artifacts/artifact/" in d.current_url)
    link = WebDriverWait(browser, 30).until(  # the rendered card's link, once it is on screen
        lambda d: next((a for a in d.find_elements(By.XPATH, f"//a[contains(@href, '/runs/{it.info.run_id}')]")
                        if a.is_displayed() and a.text), None))
    assert "#/experiments/" in link.get_attribute("href") and it.info.run_id in link.text
    text = page.text()
    assert f"Iteration {it.info.run_id} (tiny): FINISHED" in text and "final passed" in text, text[:3000]
    page.shot("full-iteration-card")

    def rerun_reason(p):
        p.field("iteration").send_keys(run_id)  # the id in this page's URL: Prefect's flow-run id
        Select(p.field("stage")).select_by_visible_text("reason")

    rerun = page.submit_custom_run("rerun-stage", rerun_reason)
    assert page.wait_final(rerun, 600) == "Completed", (tmp / "serve.log").read_text()[-3000:]
    page.click("Task Runs")
    rows = _wait("the task runs list", lambda: [r for r in page.text().splitlines() if "(recorded)" in r], 30)
    badges = [b for b in browser.find_elements(By.CSS_SELECTOR, ".state-badge")[1:]]  # [0]: the flow run's own
    reused = [b for b in badges if b.text.strip() == "Reused"]
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", reused[-1])
    page.shot("rerun-stage-task-runs")
    # base, curate, sft, reward_model, align: recorded by the first run; reason: same version, reused
    assert {"sft (recorded)", "align (recorded)", "curate (recorded)"} <= set(r.strip() for r in rows), rows
    assert len(reused) >= 6, [b.text for b in badges]
    rerun_it = latest_iteration(client)
    assert rerun_it.data.tags["rerun_of"] == it.info.run_id and rerun_it.info.status == "FINISHED"

    # Served runs that stop heartbeating are marked Crashed by this automation.
    zombie = _api(base, "/automations/filter", {})
    assert [a["name"] for a in zombie] == ["posttrain: crash zombie flow runs"]
