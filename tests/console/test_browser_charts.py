"""The dashboard's history charts in headless Chromium: drawn with data after real cycles, the
same numbers as the table under them, and refreshed by the page itself after a new run. Saves
docs/screenshots/dashboard.png and docs/screenshots/dashboard-charts.png."""

import pytest

from console import activity
from directory import changes
from requestor.cycle import run_cycle, sync_all
from requestor.models import Run
from tests.console.conftest import DOCS_SCREENSHOTS, make_user, make_world
from tests.console.test_browser import CHROMIUM, browser, log_in, page  # noqa: F401 (fixtures)
from transport.inbox import pump

DOCS = DOCS_SCREENSHOTS
SERIES = list(activity.SERIES)

pytestmark = [
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="/usr/bin/chromium is missing: run bin/ensure-browser (apt-get install chromium)",
    ),
    pytest.mark.django_db(transaction=True),
]

# Per organization and chart: how many series hold a value, and the sum of each over the window,
# as the page's own uPlot instances hold them.
DRAWN = """() => {
  const out = {};
  for (const [org, charts] of Object.entries(window.InterOrgCharts.charts)) {
    out[org] = {};
    for (const [key, chart] of Object.entries(charts)) {
      const canvas = chart.root.querySelector("canvas");
      out[org][key] = {
        canvas: !!canvas && canvas.width > 0 && canvas.height > 0,
        labels: chart.series.slice(1).map((s) => s.label),
        sums: chart.data.slice(1).map((values) => values.reduce((a, v) => a + (v || 0), 0)),
        points: chart.data.slice(1).map((values) => values.filter((v) => v != null).length),
      };
    }
  }
  return out;
}"""


def table_totals(tab, org: str) -> dict:
    """The window's totals in the table under the charts (the no-JavaScript fallback)."""
    cells = tab.locator(f"#history-table-{org} tfoot td").all_text_contents()
    return dict(zip(SERIES, cells, strict=True))


def test_the_dashboard_charts_its_history_and_refreshes_itself(page):  # noqa: F811
    world = make_world()
    make_user("root", is_superuser=True, is_staff=True)
    sync_all(max_rounds=3)

    page.clock.install()
    log_in(page, "root")
    page.wait_for_selector("#history-charts .history-chart canvas")
    drawn = page.evaluate(DRAWN)
    assert sorted(drawn) == ["ORG1", "ORG2", "ORG3"]
    for org, charts in drawn.items():
        assert all(chart["canvas"] for chart in charts.values())
        # Every organization exported its people and received the others'.
        assert charts["entries"]["sums"][0] > 0 and charts["entries"]["sums"][1] > 0
        assert all(points == 24 for points in charts["messages"]["points"])
        assert charts["duration"]["points"][0] >= 1
        totals = table_totals(page, org)
        assert totals["exported"] == str(charts["entries"]["sums"][0])
        assert totals["imported"] == str(charts["entries"]["sums"][1])
        assert totals["sent"] == str(charts["messages"]["sums"][0])
        assert totals["received"] == str(charts["messages"]["sums"][1])
        runs = Run.objects.filter(config__organization__name=org)
        assert charts["entries"]["sums"][0] == sum(r.exported for r in runs)

    DOCS.mkdir(parents=True, exist_ok=True)
    page.locator("#history").screenshot(path=str(DOCS / "dashboard-charts.png"))
    page.screenshot(path=str(DOCS / "dashboard.png"), full_page=True)

    # A new cycle of ORG3 with one change: the page picks it up on its own, without reloading.
    marker = page.evaluate("() => (window.__same_page = true)")
    assert marker is True
    person = world.org3.organization.recipients.exportable().first()
    person.title = "Changed"
    changes.save_recipient(person)
    run_cycle(world.org3.config.pk)
    pump()
    before = drawn["ORG3"]["entries"]["sums"][0]
    page.clock.fast_forward(46_000)
    page.wait_for_function("() => window.InterOrgCharts.refreshes >= 1")
    after = page.evaluate(DRAWN)
    assert after["ORG3"]["entries"]["sums"][0] == before + 1
    assert table_totals(page, "ORG3")["exported"] == str(before + 1)
    assert page.evaluate("() => window.__same_page") is True
