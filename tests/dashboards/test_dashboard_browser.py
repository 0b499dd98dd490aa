"""The dashboard in headless Chromium (Debian's, driven by Playwright) against a real uvicorn
server: sign in, open a flagged account, read its reasons, download its report, follow its
campaign, acknowledge an alert; a page fed XSS payloads stays inert. Screenshots are saved
under `test-artifacts/screenshots/`."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from core.batch import Batch
from core.events import Event
from core.settings import Settings
from core.verdicts import ClusterVerdict
from services.api import create_app
from services.auth import create_token
from services.webhooks import AlertSink, add_webhook
from storage import EmbeddedClickHouse
from storage.rows import cluster_row, event_row
from tests.services.test_api import T0, _verdict

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
XSS_ACCOUNT = "<img src=x onerror=window.__xss=1>"
XSS_PROMPTS = [
    "<script>window.__xss = 2</script>",
    '<img src=x onerror="window.__xss=3">',
    "javascript:window.__xss=4",
    '"><svg onload=window.__xss=5>',
]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _events(account: str, prompts: list[str]) -> list[dict]:
    return [
        event_row(
            Event.model_validate(
                {
                    "request_id": f"{account}-{i}",
                    "account_id": account,
                    "timestamp": int(T0.timestamp() * 1000) + i * 60_000,
                    "prompt": prompt,
                    "prompt_tokens": 10,
                    "completion_tokens": 100,
                }
            )
        )
        for i, prompt in enumerate(prompts)
    ]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, chdb_path: Path) -> Iterator[tuple[str, str]]:
    store = EmbeddedClickHouse(chdb_path, database="dgtest_browser")
    store.migrate()
    store.insert(
        "verdicts",
        [
            _verdict("acct-harvest", 0.2, "benign", 5),
            _verdict("acct-harvest", 0.86, "extraction", 48, 30),
            _verdict("acct-calm", 0.05, "benign", 12),
            _verdict(XSS_ACCOUNT, 0.7, "extraction", 20),
        ],
    )
    store.insert(
        "verdicts", [{**_verdict("acct-harvest", 0.9, "extraction", 60, 40), "cluster_id": "c-42"}]
    )
    store.insert(
        "events", _events("acct-harvest", [f"List facts about topic {i}" for i in range(12)])
    )
    store.insert("events", _events(XSS_ACCOUNT, XSS_PROMPTS))
    store.insert(
        "clusters",
        [
            cluster_row(
                ClusterVerdict(
                    cluster_id="c-42",
                    updated=T0,
                    members=["acct-harvest", "acct-sibling"],
                    score=0.88,
                    label="extraction",
                )
            )
        ],
    )
    add_webhook(store, "http://127.0.0.1:9/dg", allow_networks=["127.0.0.0/8"])  # never sent
    sink = AlertSink(store)
    sink.write(
        Batch(
            clusters=[
                ClusterVerdict(
                    cluster_id="c-42",
                    updated=T0,
                    members=["acct-harvest"],
                    score=0.88,
                    label="extraction",
                )
            ]
        )
    )
    sink.flush()
    token = create_token(store, "analyst", "browser-test")[0]
    settings = Settings(data_dir=tmp_path_factory.mktemp("dashboard-data"))
    port = _free_port()
    config = uvicorn.Config(create_app(settings, store), port=port, log_level="warning")
    web = uvicorn.Server(config)
    thread = threading.Thread(target=web.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not web.started and time.time() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", token
    web.should_exit = True
    thread.join(timeout=10)
    store.close()  # chDB holds one data folder per process: other tests open their own


@pytest.fixture
def page(server) -> Iterator:
    from playwright.sync_api import sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    executable = shutil.which("chromium")
    assert executable, "Debian chromium is not installed (scripts/report-deps installs it)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        context = browser.new_context(
            accept_downloads=True, viewport={"width": 1100, "height": 900}
        )
        tab = context.new_page()
        tab.dialogs = []
        tab.on("dialog", lambda dialog: (tab.dialogs.append(dialog.message), dialog.dismiss()))
        yield tab
        browser.close()


def sign_in(page, base: str, token: str) -> None:
    page.goto(f"{base}/dashboard/")
    page.fill("#token", token)
    page.click("#sign-in-form button")
    page.wait_for_selector("#accounts tr")


def test_analyst_signs_in_opens_a_flagged_account_and_downloads_its_report(
    page, server, tmp_path
) -> None:
    base, token = server
    page.goto(f"{base}/dashboard/")
    page.fill("#token", "dg_wrong_token")
    page.click("#sign-in-form button")
    page.wait_for_selector("#sign-in-error:has-text('not accepted')")
    sign_in(page, base, token)
    first = page.locator("#accounts tr").first
    assert first.locator("td").nth(0).inner_text() == "acct-harvest"
    page.screenshot(path=str(SCREENSHOTS / "leaderboard.png"), full_page=True)
    first.locator("a").first.click()
    page.wait_for_selector("#reasons tr")
    assert page.inner_text("#account-label") == "extraction"
    assert "greedy_share" in page.inner_text("#reasons")
    assert page.locator("#score-chart polyline").count() == 1
    page.wait_for_selector("#events tr")
    assert page.locator("#events tr").count() == 12
    page.screenshot(path=str(SCREENSHOTS / "account.png"), full_page=True)
    with page.expect_download(timeout=120_000) as download:
        page.click("#download-report")
    saved = tmp_path / "report.pdf"
    download.value.save_as(saved)
    assert saved.read_bytes()[:5] == b"%PDF-"
    page.click("#account-campaign a")
    page.wait_for_selector("#campaign-members li")
    assert page.inner_text("#campaign-members").split() == ["acct-harvest", "acct-sibling"]
    page.screenshot(path=str(SCREENSHOTS / "campaign.png"), full_page=True)
    page.click("nav button[data-view=alerts]")
    page.wait_for_selector("#alert-rows tr button")
    page.click("#alert-rows tr button")
    page.wait_for_selector("#alert-rows tr td:has-text('acknowledged')")
    page.screenshot(path=str(SCREENSHOTS / "alerts.png"), full_page=True)


def test_xss_payloads_stay_inert(page, server) -> None:
    base, token = server
    sign_in(page, base, token)
    row = page.locator("#accounts tr", has_text="onerror")
    assert row.locator("td").first.inner_text() == XSS_ACCOUNT  # shown as text
    row.locator("a").first.click()
    page.wait_for_selector("#events tr")
    shown = page.locator("#events td.prompt").all_inner_texts()
    assert sorted(shown) == sorted(XSS_PROMPTS)
    page.wait_for_timeout(500)  # give any injected handler the chance to run
    assert page.evaluate("window.__xss") is None
    assert page.dialogs == []
    assert page.locator("#events script, #events img, #events svg").count() == 0
    assert page.locator("a[href^='javascript:']").count() == 0
    page.screenshot(path=str(SCREENSHOTS / "xss.png"), full_page=True)


def test_an_alerts_link_opens_its_campaign_or_account_after_sign_in(page, server) -> None:
    """The links Slack and PagerDuty alerts carry (`services.alert_formats.dashboard_link`)."""
    from services.alert_formats import dashboard_link

    base, token = server
    campaign = {"kind": "campaign", "cluster_id": "c-42"}
    page.goto(dashboard_link(f"{base}/dashboard/", campaign))
    page.fill("#token", token)
    page.click("#sign-in-form button")
    page.wait_for_selector("#campaign-members li")
    assert page.inner_text("#campaign-id") == "c-42"
    account = {"kind": "extraction", "account_id": XSS_ACCOUNT}
    page.goto(dashboard_link(f"{base}/dashboard/", account))  # signed in: the hash is followed
    page.wait_for_selector("#account-id:has-text('onerror')")
    assert page.inner_text("#account-id") == XSS_ACCOUNT
    assert page.evaluate("window.__xss") is None
