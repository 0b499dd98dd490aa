"""The dashboard in headless Chromium (Debian's, driven by Playwright) against a real uvicorn
server: sign in, open a flagged account, read its reasons, download its report, follow its
campaign, acknowledge an alert; what the charts, the campaign graph, the leaderboard's search,
filters and sorting and the account's request pages draw is checked against the API; a page fed
XSS payloads stays inert. Screenshots are saved under `test-artifacts/screenshots/`."""

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
from core.verdicts import ClusterVerdict, Reason, Verdict
from services.api import create_app
from services.auth import create_token
from services.webhooks import AlertSink, add_webhook
from storage import EmbeddedClickHouse
from storage.rows import cluster_row, event_row, verdict_row
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
HARVEST_PROMPTS = [f"List facts about topic {i}" for i in range(45)]  # 4 minutes apart: 3 hours
SHARED = ["List facts about topic 7", "List facts about topic 30"]  # shared with acct-sibling

LINKS = [
    {
        "a": "acct-harvest",
        "b": "acct-sibling",
        "strength": 9.1,
        "pieces": ["templates", "timing"],
        "shared_prompts": 2,
    },
    {
        "a": "acct-cousin",
        "b": "acct-harvest",
        "strength": 4.2,
        "pieces": ["infra"],
        "shared_prompts": 0,
    },
]
XSS_ACCOUNT = "<img src=x onerror=window.__xss=1>"
MEMBERS = ["acct-harvest", "acct-sibling", "acct-cousin", XSS_ACCOUNT]  # an unlinked hostile name
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


def _events(account: str, prompts: list[str], step_ms: int = 60_000) -> list[dict]:
    return [
        event_row(
            Event.model_validate(
                {
                    "request_id": f"{account}-{i}",
                    "account_id": account,
                    "timestamp": int(T0.timestamp() * 1000) + i * step_ms,
                    "prompt": prompt,
                    "prompt_tokens": 10,
                    "completion_tokens": 100,
                }
            )
        )
        for i, prompt in enumerate(prompts)
    ]


def _campaign_verdict() -> dict:
    """acct-harvest's latest verdict: a campaign member, with the prompts it shares."""
    verdict = Verdict(
        account_id="acct-harvest",
        cluster_id="c-42",
        timestamp=T0.replace(minute=40),
        requests_seen=60,
        score=0.9,
        label="extraction",
        reasons=[
            Reason(signal="greedy_share", value=1.0, contribution=0.45),
            Reason(
                signal="campaign",
                value=3.0,
                contribution=0.0,
                evidence={"cluster_id": "c-42", "example_prompts": SHARED},
            ),
        ],
        detector_version="fusion-1",
    )
    return verdict_row(verdict)


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
    store.insert("verdicts", [_campaign_verdict()])
    store.insert("events", _events("acct-harvest", HARVEST_PROMPTS, step_ms=240_000))
    store.insert("events", _events(XSS_ACCOUNT, XSS_PROMPTS))
    store.insert(
        "clusters",
        [
            cluster_row(
                ClusterVerdict(
                    cluster_id="c-42",
                    updated=T0,
                    members=MEMBERS,
                    score=0.88,
                    label="extraction",
                    evidence={"links": LINKS, "example_prompts": SHARED, "edges": len(LINKS)},
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


@pytest.fixture(scope="module")
def browser(server) -> Iterator:
    """One Chromium for the module (launching it is the slow part); each test gets a context."""
    from playwright.sync_api import sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    executable = shutil.which("chromium")
    assert executable, "Debian chromium is not installed (scripts/report-deps installs it)"
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser) -> Iterator:
    context = browser.new_context(accept_downloads=True, viewport={"width": 1100, "height": 900})
    tab = context.new_page()
    tab.dialogs = []
    tab.on("dialog", lambda dialog: (tab.dialogs.append(dialog.message), dialog.dismiss()))
    yield tab
    context.close()


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
    assert page.locator("#events tr").count() == 20  # the first page of 45
    page.screenshot(path=str(SCREENSHOTS / "account.png"), full_page=True)
    with page.expect_download(timeout=120_000) as download:
        page.click("#download-report")
    saved = tmp_path / "report.pdf"
    download.value.save_as(saved)
    assert saved.read_bytes()[:5] == b"%PDF-"
    page.click("#account-campaign a")
    page.wait_for_selector("#campaign-members li")
    assert page.locator("#campaign-members li").all_inner_texts() == MEMBERS
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


def expect(locator):  # noqa: ANN201 (playwright's assertion object)
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def _api(page, server: tuple[str, str], path: str) -> dict:
    """What the API says, to compare with what the page drew."""
    base, token = server
    response = page.request.get(f"{base}{path}", headers={"Authorization": f"Bearer {token}"})
    assert response.ok, response.status
    return response.json()


def _open_harvest(page, server: tuple[str, str]) -> None:
    sign_in(page, *server)
    page.locator("#accounts a", has_text="acct-harvest").first.click()
    page.wait_for_selector("#events tr")


def _ids(page) -> list[str]:
    return page.locator("#accounts tr td:first-child").all_inner_texts()


def test_account_charts_draw_one_point_per_verdict_and_requests_per_hour(page, server) -> None:
    _open_harvest(page, server)
    verdicts = _api(page, server, "/v1/verdicts?account_id=acct-harvest&limit=500")["items"]
    points = page.locator("#score-chart circle.point")
    assert points.count() == len(verdicts) == 3
    flagged = sum(v["label"] == "extraction" for v in verdicts)
    assert page.locator("#score-chart circle.point.extraction").count() == flagged == 2
    labels = page.locator("#score-chart .axis-label").all_text_contents()
    assert labels[1] == "score" and labels[0].startswith("verdict time (UTC")
    assert page.text_content("#score-chart .threshold-label") == "extraction threshold 0.5"
    ticks = page.locator("#score-chart .y-axis .tick").all_text_contents()
    assert ticks == ["0.00", "0.25", "0.50", "0.75", "1.00"]
    assert page.locator("#score-chart .x-axis .tick").count() == 4
    # 45 requests 4 minutes apart from 12:00: three hours of 15
    bars = page.locator("#hourly-chart rect.bar")
    assert bars.count() == 3
    titles = [bars.nth(i).locator("title").text_content() for i in range(3)]
    assert [t.split(": ")[1] for t in titles] == ["15 requests"] * 3
    assert page.locator("#hourly-chart .axis-label").all_text_contents()[1] == "requests"
    assert page.inner_text("#hourly-sample") == "all 45 requests"


def test_account_requests_are_paged_with_shared_prompts_highlighted(page, server) -> None:
    _open_harvest(page, server)
    expected = _api(page, server, "/v1/events?account_id=acct-harvest&limit=20")["items"]
    rows = page.locator("#events tr")
    assert rows.locator("td:nth-child(2)").all_inner_texts() == [e["request_id"] for e in expected]
    assert page.is_disabled("#events-prev") and not page.is_disabled("#events-next")
    seen, matched = [], []
    for first, last in ((1, 20), (21, 40), (41, 45)):
        if first > 1:
            page.click("#events-next")
        # locator waits: the page's CSP forbids the eval that wait_for_function needs
        expect(page.locator("#events-page")).to_have_text(f"requests {first}–{last} (oldest first)")
        expect(rows).to_have_count(last - first + 1)
        seen += rows.locator("td:nth-child(2)").all_inner_texts()
        matched += page.locator("#events tr.matched td.prompt").all_inner_texts()
    assert len(seen) == len(set(seen)) == 45
    assert page.is_disabled("#events-next") and not page.is_disabled("#events-prev")
    # exactly the shared prompts, not the ones they are a prefix of ("topic 3", "topic 70")
    assert sorted(m.removeprefix("shared").strip() for m in matched) == sorted(SHARED)
    page.click("#events-prev")
    page.wait_for_selector("#events-page:has-text('requests 21–40')")
    page.screenshot(path=str(SCREENSHOTS / "account-requests-page-2.png"), full_page=True)


def test_campaign_graph_draws_members_as_nodes_and_links_as_labelled_edges(page, server) -> None:
    base, token = server
    sign_in(page, base, token)
    page.goto(f"{base}/dashboard/#/campaigns/c-42")
    page.wait_for_selector("#campaign-graph .node")
    cluster = _api(page, server, "/v1/clusters/c-42")
    nodes = page.locator("#campaign-graph .node title").all_text_contents()  # labels may be cut
    assert sorted(nodes) == sorted(cluster["members"]) == sorted(MEMBERS)
    assert page.locator("#campaign-graph line.edge").count() == len(cluster["evidence"]["links"])
    edge_labels = page.locator("#campaign-graph text.edge-label").all_text_contents()
    assert edge_labels == ["templates + timing (2 prompts)", "infra"]
    assert "Example shared prompts" in page.inner_text("#campaign-evidence")
    assert page.locator("#campaign-graph img, #campaign-graph script").count() == 0
    assert page.evaluate("window.__xss") is None
    page.screenshot(path=str(SCREENSHOTS / "campaign-graph.png"), full_page=True)
    page.locator("#campaign-graph .node", has_text="acct-harvest").locator("circle").click()
    page.wait_for_selector("#account-id:has-text('acct-harvest')")


def test_leaderboard_searches_filters_and_sorts(page, server) -> None:
    sign_in(page, *server)
    ranked = [a["account_id"] for a in _api(page, server, "/v1/accounts?limit=500")["items"]]
    assert _ids(page) == ranked  # by score, highest first
    page.fill("#search", "CALM")
    assert _ids(page) == ["acct-calm"]
    assert page.inner_text("#shown-count") == f"1 of {len(ranked)} accounts"
    page.fill("#search", "")
    page.fill("#since", "2026-11-20T12:30")  # only acct-harvest had a verdict after 12:30 UTC
    assert _ids(page) == ["acct-harvest"]
    page.fill("#since", "")
    page.click("#accounts-table th[data-sort=score]")  # highest first already: now lowest first
    assert _ids(page) == ranked[::-1]
    assert page.get_attribute("#accounts-table th[data-sort=score]", "aria-sort") == "ascending"
    page.click("#accounts-table th[data-sort=account_id]")
    assert _ids(page) == sorted(ranked)
    with page.expect_response(lambda r: "label=benign" in r.url):
        page.select_option("#label-filter", "benign")
    expect(page.locator("#accounts tr")).to_have_count(1)
    assert _ids(page) == ["acct-calm"]
    page.screenshot(path=str(SCREENSHOTS / "leaderboard-filtered.png"), full_page=True)
    with page.expect_response(lambda r: "disposition=confirmed_extraction" in r.url):
        page.select_option("#disposition-filter", "confirmed_extraction")
    expect(page.locator("#accounts tr")).to_have_count(0)  # no account is confirmed


def test_an_earlier_leaderboard_answer_arriving_late_does_not_replace_a_filtered_one(
    page, server
) -> None:
    """The leaderboard shows the answer to its latest request: an unfiltered list asked for
    just before a filter changed, answered after the filtered one, is dropped. (Last answer wins
    showed all accounts under the filter: the disposition test below failed so on a loaded
    machine.)"""
    sign_in(page, *server)
    page.wait_for_selector("#accounts tr")
    held = []

    def hold_unfiltered(route) -> None:
        if "label=" in route.request.url:
            route.continue_()
        else:
            held.append(route)

    page.route("**/v1/accounts?*", hold_unfiltered)
    page.click("nav button[data-view=leaderboard]")  # asks for every account: held back
    with page.expect_response(lambda r: "label=benign" in r.url):
        page.select_option("#label-filter", "benign")
    expect(page.locator("#accounts tr")).to_have_count(1)
    assert len(held) == 1
    with page.expect_response(lambda r: "/v1/accounts?" in r.url and "label=" not in r.url):
        held[0].continue_()  # the earlier answer arrives last
    page.wait_for_timeout(300)  # time to render it, were it rendered
    assert _ids(page) == ["acct-calm"]
    page.unroute("**/v1/accounts?*")


def test_an_analyst_records_dispositions_on_an_account_and_a_campaign(page, server) -> None:
    """The form posts to /v1/dispositions and the history shows what was recorded; an allowlist
    without an expiry is refused with the API's reason, and nothing is recorded for it."""
    base, token = server
    sign_in(page, base, token)
    page.goto(f"{base}/dashboard/#/accounts/acct-calm")
    box = page.locator("#account-disposition")
    box.locator(".disposition-current:has-text('none')").wait_for()
    box.locator("select[name=disposition]").select_option("allowlisted")
    box.locator("input[name=reason]").fill("<b>internal eval</b>")
    box.locator("button[type=submit]").click()
    box.locator(".disposition-status:has-text('not saved')").wait_for()
    assert "expires_at" in box.locator(".disposition-status").inner_text()
    assert box.locator(".disposition-history tr").count() == 0
    box.locator("select[name=disposition]").select_option("false_positive")
    box.locator("input[name=reason]").fill("<b>internal eval</b>")
    box.locator("input[name=assignee]").fill("sam")
    box.locator("button[type=submit]").click()
    box.locator(".disposition-current:has-text('false_positive')").wait_for()
    cells = box.locator(".disposition-history tr").first.locator("td").all_inner_texts()
    assert cells[1:3] == ["false_positive", "<b>internal eval</b>"]  # text, never markup
    assert cells[4:] == ["sam", "", "browser-test"]
    assert box.locator(".disposition-history b").count() == 0
    page.screenshot(path=str(SCREENSHOTS / "account-disposition.png"), full_page=True)
    page.click("nav button[data-view=leaderboard]")
    with page.expect_response(lambda r: "disposition=false_positive" in r.url):
        page.select_option("#disposition-filter", "false_positive")
    expect(page.locator("#accounts tr")).to_have_count(1)
    assert _ids(page) == ["acct-calm"]
    page.goto(f"{base}/dashboard/#/campaigns/c-42")
    campaign = page.locator("#campaign-disposition")
    campaign.locator(".disposition-current:has-text('none')").wait_for()
    campaign.locator("select[name=disposition]").select_option("confirmed_extraction")
    campaign.locator("button[type=submit]").click()
    campaign.locator(".disposition-current:has-text('confirmed_extraction')").wait_for()
    assert campaign.locator(".disposition-history tr").count() == 1
