"""The ZenML dashboard shows an IGPO run: Debian's Chromium driven by Playwright (no browser download)
against the local ZenML server. Onboarding is cleared, the run page's DAG renders, the IGPO checkpoint
artifact leads to its producer step, and the evaluation report's HTML visualization opens. Screenshots
and page texts are saved under the test's tmp_path (printed at the end).

The demo run and the server live in a ZenML home of their own (a subprocess with its own
ZENML_CONFIG_PATH): `zenml login --local` rewrites the global store configuration, which must not leak
into the rest of the test session.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ZENML = str(Path(sys.executable).with_name("zenml"))
CHECKPOINT = '[data-id="train_igpo/outputs/step_output/igpo_checkpoint"]'
REPORT = '[data-id="build_report/outputs/step_output/report"]'

pytestmark = pytest.mark.slow

# The demo run (shrunk shipped config) on a fresh store.
RUN_DEMO = """
import sys
sys.path[:0] = [{root!r}, {tests!r}]
from shrink import shrunk_demo_config, write_config
from pathlib import Path
from pipelines.igpo import igpo_pipeline
from pipelines.stack import ensure_local_stack
ensure_local_stack()
run = igpo_pipeline.with_options(config_path=str(write_config(shrunk_demo_config(), Path({config!r}))))()
print("RUN_ID", run.id)
"""


def _browser_or_skip() -> None:
    """Missing Chromium or Playwright skips, unless IGPO_REQUIRE_BROWSER=1 (CI), where it fails."""
    missing = []
    if not os.path.exists(CHROMIUM):
        missing.append(f"{CHROMIUM} (apt-get install chromium; `make test` does it when it can)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the playwright package (pip install -e '.[test]')")
    if missing:
        message = "dashboard browser test needs " + " and ".join(missing)
        if os.environ.get("IGPO_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)


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
    _browser_or_skip()
    home = tmp_path_factory.mktemp("zenml-dashboard")
    (home / ".zen").mkdir()
    env = dict(os.environ, ZENML_CONFIG_PATH=str(home / "config"), ZENML_REPOSITORY_PATH=str(home),
               ZENML_ANALYTICS_OPT_IN="false", ZENML_AUTO_OPEN_DASHBOARD="false", OMP_NUM_THREADS="1")
    script = RUN_DEMO.format(root=str(ROOT), tests=str(ROOT / "tests" / "pipelines"), config=str(home / "demo.yaml"))
    demo = subprocess.run([sys.executable, "-c", script], check=False, env=env, cwd=home, timeout=900, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert demo.returncode == 0, demo.stdout[-4000:]
    run_id = re.search(r"RUN_ID (\S+)", demo.stdout).group(1)
    port = _free_port()
    # What `make dashboard` runs: onboarding cleared on the store, then `zenml login --local` serves it.
    login = subprocess.run([sys.executable, "-m", "pipelines.dashboard", "--port", str(port)], check=False, env=env,
                           cwd=ROOT, timeout=240, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert login.returncode == 0, login.stdout[-4000:]
    assert f"http://127.0.0.1:{port}" in login.stdout and "logout --local" in login.stdout, login.stdout[-2000:]
    try:
        yield f"http://127.0.0.1:{port}", run_id
    finally:
        subprocess.run([ZENML, "logout", "--local"], check=False, env=env, cwd=home, timeout=120,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        shutil.rmtree(home, ignore_errors=True)


def test_dashboard_run_dag_checkpoint_lineage_and_report(server_and_run, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    base, run_id = server_and_run
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.set_default_timeout(60_000)
            # Hermetic: only the local server (the dashboard also fetches logos and changelogs from the web).
            page.route("**/*", lambda r: r.continue_() if r.request.url.startswith(base) else r.abort())

            page.goto(f"{base}/")
            page.wait_for_load_state("networkidle")
            _shot(page, tmp_path / "1-home.png")
            assert "/survey" not in page.url and "onboarding" not in page.url, page.url
            assert page.locator("form").filter(has_text=re.compile("survey", re.IGNORECASE)).count() == 0

            # The run page: wait for the DAG, then zoom out (mouse wheel over the canvas) until the nodes we
            # need are drawn - the DAG only renders nodes inside the viewport.
            page.goto(f"{base}/projects/default/runs/{run_id}")
            page.locator('[data-id="step/ingest_datasets"]').wait_for()
            canvas = page.locator(".react-flow").first.bounding_box()
            page.mouse.move(canvas["x"] + canvas["width"] / 2, canvas["y"] + canvas["height"] / 2)
            for _ in range(12):
                if page.locator(CHECKPOINT).count() and page.locator(REPORT).count():
                    break
                page.mouse.wheel(0, 400)
                page.wait_for_timeout(500)
            page.locator(CHECKPOINT).wait_for(timeout=10_000)
            _shot(page, tmp_path / "2-dag.png")

            # The IGPO checkpoint artifact: its sheet names the step that produced it.
            page.locator(CHECKPOINT).locator("button").first.click()
            expect(page.locator("body")).to_contain_text(re.compile(r"Producer Step\s*train_igpo"), timeout=30_000)
            _shot(page, tmp_path / "3-checkpoint.png")
            sheet = page.inner_text("body")
            (tmp_path / "3-checkpoint.txt").write_text(sheet)
            assert "igpo_checkpoint" in sheet
            page.keyboard.press("Escape")  # close the sheet; it covers the DAG
            page.locator(REPORT).wait_for()

            # The evaluation report: its Visualization tab renders the HTML artifact in a sandboxed frame.
            page.locator(REPORT).locator("button").first.click()
            expect(page.locator("body")).to_contain_text(re.compile(r"Producer Step\s*build_report"), timeout=30_000)
            page.get_by_role("tab", name="Visualization").last.click()
            page.get_by_role("button", name="Load Preview").click()  # the dashboard asks before running HTML
            frame = page.frame_locator("iframe").first
            frame.get_by_text("IGPO run report").wait_for()
            _shot(page, tmp_path / "4-report.png")
            report = frame.locator("body").inner_text()
            (tmp_path / "4-report.txt").write_text(report)
            for model in ("base", "sft", "sft+grpo", "sft+igpo"):
                assert re.search(rf"^{re.escape(model)}\s+demo\s+pass@1", report, re.MULTILINE), f"no score row for {model}"
        finally:
            browser.close()
    for name in ("1-home.png", "2-dag.png", "3-checkpoint.png", "4-report.png"):
        assert (tmp_path / name).stat().st_size > 10_000, f"screenshot {name} looks empty"
    print("dashboard screenshots:", tmp_path)
