"""The ZenML dashboard shows an IGPO run: Debian's Chromium driven by Playwright (no browser download)
against the local ZenML server on the hermetic store. Onboarding is cleared, the DAG renders, the IGPO
checkpoint artifact leads to its producer step, the report's visualization opens. Screenshots: tmp_path."""

from __future__ import annotations

import base64
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "pipelines"))
from shrink import shrunk_demo_config, write_config

# Work in progress (issue 8): the run page, the DAG and the checkpoint's producer step work; opening the
# report's visualization is not reliable yet. Opt in with IGPO_DASHBOARD_TEST=1 (needs Debian's chromium
# and the playwright package; no browser is ever downloaded).
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("IGPO_DASHBOARD_TEST") != "1", reason="dashboard test is opt-in (IGPO_DASHBOARD_TEST=1), work in progress"),
]

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ZENML = str(Path(sys.executable).with_name("zenml"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _shot(page, path: Path) -> None:
    # CDP capture: Playwright's page.screenshot can hang "waiting for fonts" with Debian's Chromium.
    cdp = page.context.new_cdp_session(page)
    path.write_bytes(base64.b64decode(cdp.send("Page.captureScreenshot", {"format": "png"})["data"]))
    cdp.detach()


@pytest.fixture(scope="module")
def server_and_run(tmp_path_factory):
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} missing (apt-get install chromium)")
    pytest.importorskip("playwright.sync_api", reason="playwright not installed (pip install -e .[test])")
    from zenml.client import Client

    from pipelines.igpo import igpo_pipeline
    from pipelines.stack import ensure_local_stack

    # 1) Run on the hermetic SQL store; 2) clear onboarding there (the REST API drops email_opted_in,
    #    and the dashboard shows the survey while it is null); 3) serve that same sqlite store.
    ensure_local_stack()
    run = igpo_pipeline.with_options(
        config_path=str(write_config(shrunk_demo_config(), tmp_path_factory.mktemp("cfg") / "c.yaml")))()
    client = Client()
    client.update_user(client.active_user.id, updated_email_opt_in=False,
                       updated_metadata={"finished_onboarding_survey": True})
    port = _free_port()
    env = dict(os.environ, ZENML_AUTO_OPEN_DASHBOARD="false", ZENML_ANALYTICS_OPT_IN="false")
    subprocess.run([ZENML, "login", "--local", "--port", str(port)], env=env, check=True, timeout=240,
                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        yield f"http://127.0.0.1:{port}", run.id
    finally:
        subprocess.run([ZENML, "logout", "--local"], env=env, timeout=120,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_dashboard_run_dag_checkpoint_lineage_and_report(server_and_run, tmp_path):
    from playwright.sync_api import sync_playwright

    base, run_id = server_and_run
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            # Hermetic: only the local server (the dashboard also fetches logos/changelogs from the web).
            page.route("**/*", lambda r: r.continue_() if r.request.url.startswith(base) else r.abort())

            page.goto(f"{base}/")
            page.wait_for_load_state("networkidle")
            _shot(page, tmp_path / "home.png")
            assert "/survey" not in page.url, page.url
            assert page.locator("form").filter(has_text="survey").count() == 0

            page.goto(f"{base}/projects/default/runs/{run_id}")
            page.locator('[data-id="step/ingest_datasets"]').wait_for(timeout=60_000)
            page.mouse.click(28, 335)  # the DAG's fit-view control (unlabelled), so every node is rendered
            ckpt = page.locator('[data-id="train_igpo/outputs/step_output/rl_checkpoint"]')
            ckpt.wait_for(timeout=15_000)
            _shot(page, tmp_path / "dag.png")

            ckpt.locator("button").first.click()
            page.wait_for_timeout(3000)
            _shot(page, tmp_path / "checkpoint.png")
            sheet = page.inner_text("body")
            (tmp_path / "checkpoint.txt").write_text(sheet)
            assert "rl_checkpoint" in sheet and "train_igpo" in sheet  # the artifact sheet names its producer step
            page.keyboard.press("Escape")  # close the artifact sheet before clicking the next node
            page.wait_for_timeout(1000)

            report = page.locator('[data-id="build_report/outputs/step_output/report"]')
            report.locator("button").first.click()
            page.wait_for_timeout(3000)
            _shot(page, tmp_path / "report.png")
            (tmp_path / "report.txt").write_text(page.inner_text("body"))
        finally:
            browser.close()
    print("screenshots:", tmp_path)
