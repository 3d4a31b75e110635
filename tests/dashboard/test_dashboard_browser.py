"""The coordinators' dashboard in headless chromium, on the real app over the flow workload: after login
every chart is drawn from the flows endpoints, hidden values read "hidden" and are never drawn, filters
reload the charts, a wrong token says why, and the token stays out of URLs and cookies. Saves
``docs/dashboard.png`` for the coordinators' guide."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.dashboard.conftest import County
from tests.flows import workload

SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "dashboard.png"
VIEWPORT = {"width": 1280, "height": 900}
K = 5


def near(published: float | None, truth: int) -> bool:
    """A published count: the true one with cell-key noise of at most ±3, never below k."""
    return published is not None and abs(published - truth) <= 3 and published >= K


# What each chart was given, read back from its ECharts instance (series data as drawn).
OPTIONS = """() => Object.fromEntries(['matrix', 'funnel', 'lead', 'stalls'].map((name) => {
  const option = echarts.getInstanceByDom(document.getElementById('chart-' + name)).getOption();
  const axis = [...(option.xAxis || []), ...(option.yAxis || [])].find((a) => a.type === 'category');
  return [name, {series: option.series.map((s) => ({type: s.type, data: s.data, links: s.links || null})),
                 categories: axis ? axis.data : null}];
}))"""


@pytest.fixture
async def page(browser: Any, hub_url: str) -> AsyncIterator[Any]:
    context = await browser.new_context(viewport=VIEWPORT, locale="en-GB")
    opened = await context.new_page()
    errors: list[str] = []
    # A CSP violation or a script error shows up here: the page must run without either.
    opened.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    opened.on("pageerror", lambda e: errors.append(str(e)))
    opened.errors = errors
    await opened.goto(f"{hub_url}/dashboard")
    await opened.wait_for_selector("body[data-started=true]")
    yield opened
    await context.close()


async def login(page: Any, token: str) -> None:
    await page.fill("#token", token)
    await page.click("#login-form button[type=submit]")


async def ready(page: Any) -> None:
    await page.wait_for_selector("#board[data-state=ready]")


def console_errors(page: Any) -> list[str]:
    # A 401/403 answer is logged by chromium as a failed resource; that is the error path under test.
    return [e for e in page.errors if "status of 401" not in e and "status of 403" not in e]


async def test_after_login_every_chart_is_drawn_with_data_and_hidden_values_read_hidden(
    page: Any, county: County
) -> None:
    await login(page, county.token())
    await ready(page)
    options = await page.evaluate(OPTIONS)

    sankey = options["matrix"]["series"][0]
    assert sankey["type"] == "sankey"
    links = {(link["source"], link["target"]): link["value"] for link in sankey["links"]}
    assert set(links) == {("s:grundskola", "r:socialtjanst-myndighet")}, "only the published flow is drawn"
    assert near(links[("s:grundskola", "r:socialtjanst-myndighet")], 10), "ten reports of concern"
    hidden_flows = await page.text_content("#hidden-matrix")
    # One child went to the first line: hidden, and BUP's flow with it (else the row total gives it away).
    assert "Student health team → Child and adolescent psychiatry" in hidden_flows, hidden_flows
    assert "Student health team → First-line" in hidden_flows, hidden_flows

    funnel = options["funnel"]
    steps = dict(zip(funnel["categories"], funnel["series"][0]["data"], strict=True))
    assert list(steps) == ["Step 0", "Step 1", "Step 2", "Step 3"]
    assert steps["Step 0"] == 0 and steps["Step 3"] == 0, "no referral at these steps: a true zero"
    assert near(steps["Step 1"], 11) and near(steps["Step 2"], 8)

    lead = options["lead"]
    assert lead["categories"] == ["1884", "All"], "Nora, then the county"
    median, p90 = (s["data"] for s in lead["series"])
    assert median[1] is not None and median[1] < 1, "accepted within seconds (nine children)"
    assert p90 == [None, None], "nine children: a 90th percentile needs ten"

    stalls = options["stalls"]
    stalled = dict(zip(stalls["categories"], stalls["series"][0]["data"], strict=True))
    assert stalled["Child and adolescent psychiatry"] is None, "a suppressed cell is not drawn"
    assert near(stalled["All"], 6), "six referrals open at step 2 for 40 days"

    for name in ("matrix", "funnel", "lead", "stalls"):  # drawn, not just configured
        width = await page.eval_on_selector(f"#chart-{name} canvas", "c => c.width")
        assert width > 300, name
    table = await page.eval_on_selector_all(
        "#table-stalls tr", "trs => trs.map(tr => [...tr.children].map(c => [c.textContent, c.className]))"
    )
    hidden = ["hidden", "hidden-value"]
    assert table[1] == [["Child and adolescent psychiatry", ""], hidden, hidden], "its count and its wait"
    assert table[3][0] == ["All", ""] and table[3][2][0] == "40", "the county's median days waiting"
    assert "fewer than 5 children" in await page.text_content("#notes")
    assert not console_errors(page), page.errors

    SCREENSHOT.parent.mkdir(exist_ok=True)
    await page.screenshot(path=str(SCREENSHOT), full_page=False)


async def test_changing_a_filter_asks_again_with_it(page: Any, county: County) -> None:
    await login(page, county.token())
    await ready(page)
    async with page.expect_request(lambda r: "/v1/flows/counts" in r.url and "kind=remiss" in r.url):
        await page.select_option("select[name=kind]", "remiss")
    await ready(page)
    options = await page.evaluate(OPTIONS)
    steps = dict(zip(options["funnel"]["categories"], options["funnel"]["series"][0]["data"], strict=True))
    # One child at step 1 (hidden) and, as its complement, step 2: both hidden, neither drawn as 0.
    assert steps == {"Step 0": 0, "Step 1": None, "Step 2": None, "Step 3": 0}
    cells = await page.eval_on_selector_all("#table-funnel td", "tds => tds.map(t => t.textContent)")
    assert cells == ["Step 0", "0", "Step 1", "hidden", "Step 2", "hidden", "Step 3", "0"]


@pytest.mark.parametrize(
    ("token", "message"),
    [("not-a-token", "token"), ("coordinator-but-not", "coordinator")],
    ids=["garbage", "wrong-role"],
)
async def test_a_wrong_token_says_why_and_asks_again(page: Any, county: County, token: str, message: str) -> None:
    if token == "coordinator-but-not":
        token = county.token(workload.BUP, "system")
    await login(page, token)
    error = page.locator("#error")
    await error.wait_for(state="visible")
    assert message in (await error.text_content() or "").lower()
    assert await page.is_visible("#login") and not await page.is_visible("#board")
    assert await page.evaluate("() => sessionStorage.length") == 0, "the rejected token is forgotten"
    assert not console_errors(page), page.errors


async def test_the_token_stays_in_the_tab_and_the_authorization_header(page: Any, county: County) -> None:
    token = county.token()
    requests: list[Any] = []
    page.on("request", lambda request: requests.append(request))
    await login(page, token)
    await ready(page)
    flows = [r for r in requests if "/v1/flows/" in r.url]
    assert len(flows) == 4
    for request in requests:
        assert token not in request.url
    for request in flows:
        assert (await request.all_headers())["authorization"] == f"Bearer {token}"
    assert await page.context.cookies() == []
    assert await page.evaluate("() => sessionStorage.getItem('hub.dashboard.token')") == token
    await page.click("#logout")
    assert await page.evaluate("() => sessionStorage.length") == 0
