"""The coordinators' dashboard in headless chromium, on the real app over the flow workload: after login
every chart draws exactly what the flows endpoints answer (fetched here too), hidden values read "hidden"
and are never drawn, municipalities are offered by name, filters reload the charts, a wrong token says
why, and the token stays out of URLs and cookies. Saves ``docs/dashboard.png`` for the coordinators'
guide."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.dashboard.conftest import County
from tests.flows import workload

SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "dashboard.png"
VIEWPORT = {"width": 1280, "height": 900}
STEPS = ["0", "1", "2", "3"]
NORA, OREBRO = "1884", "1880"


async def answer(hub_url: str, token: str, endpoint: str, **params: Any) -> dict[tuple[str, ...], dict[str, Any]]:
    """What the hub answers the dashboard's question, by key (totals' "*" included)."""
    async with httpx.AsyncClient(base_url=hub_url, headers={"Authorization": f"Bearer {token}"}) as client:
        r = await client.get(f"/v1/flows/{endpoint}", params=params)
    assert r.status_code == 200, r.text
    found = r.json()
    return {tuple(row["key"][g] for g in found["by"]): row["values"] for row in found["rows"]}


# What each chart was given, read back from its ECharts instance (series data as drawn).
OPTIONS = """() => Object.fromEntries(['matrix', 'funnel', 'lead', 'stalls', 'teams'].map((name) => {
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


async def test_after_login_every_chart_draws_the_hubs_answers_and_hidden_values_read_hidden(
    page: Any, county: County, hub_url: str
) -> None:
    token = county.token()
    await login(page, token)
    await ready(page)
    options = await page.evaluate(OPTIONS)

    matrix = await answer(hub_url, token, "matrix", level="type")
    cells = {key: values["sent"] for key, values in matrix.items() if "*" not in key}
    sankey = options["matrix"]["series"][0]
    assert sankey["type"] == "sankey"
    links = {(link["source"], link["target"]): link["value"] for link in sankey["links"]}
    assert links == {(f"s:{s}", f"r:{r}"): v for (s, r), v in cells.items() if v}, "only published flows are drawn"
    hidden_flows = await page.text_content("#hidden-matrix")
    # One child went to the first line: hidden, never drawn, and listed under the diagram.
    assert cells[("elevhalsa", "forsta-linjen")] is None
    assert "Student health team → First-line" in hidden_flows, hidden_flows
    assert hidden_flows.count("→") == sum(v is None for v in cells.values())

    steps = await answer(hub_url, token, "counts", by="step", step=STEPS)
    funnel = options["funnel"]
    drawn = dict(zip(funnel["categories"], funnel["series"][0]["data"], strict=True))
    assert drawn == {f"Step {s}": steps.get((s,), {"sent": 0})["sent"] for s in STEPS}
    assert drawn["Step 0"] == 0 and drawn["Step 3"] == 0, "no referral at these steps: a true zero"

    lead = options["lead"]
    assert lead["categories"] == ["Nora", "All"], "municipalities by name, then the county"
    times = await answer(hub_url, token, "lead-times", by="municipality")
    median, p90 = (s["data"] for s in lead["series"])
    assert median == [times[(m,)]["accepted_median_days"] for m in (NORA, "*")]
    assert p90 == [times[(m,)]["accepted_p90_days"] for m in (NORA, "*")]

    stalled = await answer(hub_url, token, "stalls", by="recipient_type")
    stalls = options["stalls"]
    bars = dict(zip(stalls["categories"], stalls["series"][0]["data"], strict=True))
    assert bars["Child and adolescent psychiatry"] == stalled[("bup",)]["stalled"]
    assert bars["All"] == stalled[("*",)]["stalled"]

    teams = await answer(hub_url, token, "teams", by="municipality")
    gaps = await answer(hub_url, token, "handovers", by="municipality")
    panel = options["teams"]
    assert panel["categories"] == ["Nora", "All"]
    named, lead_professional, unanswered, past = (s["data"] for s in panel["series"])
    assert named == [teams[(m,)]["named_person"] for m in (NORA, "*")] and named[0] is not None, "15 children"
    assert lead_professional == [0, 0], "no lead professional: a true zero"
    assert unanswered == [gaps[(m,)]["offers_unanswered"] for m in (NORA, "*")] and unanswered[0] is not None
    assert past == [0, 0]

    for name in ("matrix", "funnel", "lead", "stalls", "teams"):  # drawn, not just configured
        width = await page.eval_on_selector(f"#chart-{name} canvas", "c => c.width")
        assert width > 300, name
    table = await page.eval_on_selector_all(
        "#table-stalls tr", "trs => trs.map(tr => [...tr.children].map(c => [c.textContent, c.className]))"
    )
    first_line = next(row for row in table if row[0][0].startswith("First-line"))
    assert first_line[1:] == [["hidden", "hidden-value"], ["hidden", "hidden-value"]], "one child: count and wait"
    assert "fewer than 5 children" in await page.text_content("#notes")
    assert not console_errors(page), page.errors

    SCREENSHOT.parent.mkdir(exist_ok=True)
    await page.screenshot(path=str(SCREENSHOT), full_page=False)


async def test_municipalities_are_offered_by_name_with_scb_codes_underneath(
    page: Any, county: County, hub_url: str
) -> None:
    await login(page, county.token())
    await ready(page)
    found = await page.eval_on_selector_all(
        "select[name=municipality] option", "os => os.map(o => [o.value, o.textContent])"
    )
    offered = [tuple(option) for option in found]
    assert len(offered) == 13, "Region Örebro län's twelve municipalities and the county-wide units"
    assert (NORA, "Nora") in offered and (OREBRO, "Örebro") in offered and offered[-1] == ("county", "County-wide")
    async with page.expect_request(lambda r: "/v1/flows/counts" in r.url and f"municipality={NORA}" in r.url):
        await page.select_option("select[name=municipality]", [NORA])
    await ready(page)
    async with page.expect_request(
        lambda r: "/v1/flows/matrix" in r.url and f"municipality={NORA}" in r.url and f"municipality={OREBRO}" in r.url
    ):
        await page.select_option("select[name=municipality]", [NORA, OREBRO])
    await ready(page)
    assert not console_errors(page), page.errors


async def test_changing_a_filter_asks_again_with_it(page: Any, county: County, hub_url: str) -> None:
    token = county.token()
    await login(page, token)
    await ready(page)
    async with page.expect_request(lambda r: "/v1/flows/counts" in r.url and "kind=remiss" in r.url):
        await page.select_option("select[name=kind]", "remiss")
    await ready(page)
    options = await page.evaluate(OPTIONS)
    drawn = dict(zip(options["funnel"]["categories"], options["funnel"]["series"][0]["data"], strict=True))
    steps = await answer(hub_url, token, "counts", by="step", step=STEPS, kind="remiss")
    expected = {s: steps.get((s,), {"sent": 0})["sent"] for s in STEPS}
    assert drawn == {f"Step {s}": v for s, v in expected.items()}
    # One child at step 1: hidden, not drawn as 0; in the table it reads "hidden".
    assert expected["1"] is None and drawn["Step 0"] == 0
    cells = await page.eval_on_selector_all("#table-funnel td", "tds => tds.map(t => t.textContent)")
    assert cells == [x for s, v in expected.items() for x in (f"Step {s}", "hidden" if v is None else str(v))]


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
    assert len(flows) == 6
    for request in requests:
        assert token not in request.url
    for request in flows:
        assert (await request.all_headers())["authorization"] == f"Bearer {token}"
    assert await page.context.cookies() == []
    assert await page.evaluate("() => sessionStorage.getItem('hub.dashboard.token')") == token
    await page.click("#logout")
    assert await page.evaluate("() => sessionStorage.length") == 0
