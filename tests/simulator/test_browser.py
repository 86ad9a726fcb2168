"""Issue 12, Must show 3: the report opened in a real, headless browser (Debian's chromium).

Issue 20, Must show 3: a two-unit, two-customer simulation report, looked at as a billing
engineer would: its screenshot is written to a known path (``$BILLING_CREDITS_ARTIFACTS``,
default ``build/test-artifacts/``), recorded as a test property and printed in the session's
summary; the test checks from inside the browser that the axes (ticks and titles), the legend,
the customer and unit names and the synthetic-usage statement are drawn and visible.

The page is loaded from a file (no network: the report references nothing), rendered, and
checked from inside: every customer section holds a drawn chart per side with a visible layer
per grant, and no script error or console message occurred. A screenshot is written to a
temporary folder. Outside CI the test is skipped when chromium is not installed; in CI
(``CI=true``) it must run (``.ci/run`` installs chromium).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import billing_credits as bc

# Test-only harness around the report (the report itself has no script): record any error,
# then measure what was drawn, into attributes --dump-dom prints.
BEFORE = """<script>
window.__errors = [];
window.addEventListener("error", function (e) { window.__errors.push(String(e.message)); });
</script>"""
AFTER = """<script>
(function () {
  var out = [];
  document.querySelectorAll("section.customer").forEach(function (section) {
    var charts = section.querySelectorAll("svg.burndown");
    var drawn = 0, layers = 0;
    charts.forEach(function (svg) {
      var box = svg.getBoundingClientRect();
      if (box.width > 50 && box.height > 20) { drawn += 1; }
      svg.querySelectorAll("path.layer").forEach(function (path) {
        var b = path.getBBox();
        if (b.width > 0 && b.height > 0) { layers += 1; }
      });
    });
    out.push({customer: section.dataset.customer, charts: charts.length, drawn: drawn,
              layers: layers});
  });
  var result = document.createElement("pre");
  result.id = "browser-check";
  result.textContent = JSON.stringify({sections: out, errors: window.__errors});
  document.body.appendChild(result);
})();
</script>"""


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.environ.get("CI") == "true":
        pytest.fail("chromium is not installed, and CI must run the browser test (.ci/run "
                    "installs it: apt-get install -y chromium)")
    pytest.skip("chromium is not installed (apt-get install -y chromium); CI runs this test")


def run(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--disable-extensions", "--disable-default-apps",
         f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
         "--window-size=1200,1600", *args],
        capture_output=True, text=True, timeout=180, check=False)


def test_the_report_renders_in_chromium(comparison: bc.Comparison, tmp_path: Path) -> None:
    binary = chromium()
    report = comparison.html()
    checked = tmp_path / "checked.html"
    checked.write_text(report.replace("<head>", "<head>" + BEFORE, 1)
                       .replace("</body>", AFTER + "</body>", 1), encoding="utf-8")
    plain = tmp_path / "report.html"
    plain.write_text(report, encoding="utf-8")

    dom = run(binary, tmp_path / "profile-dom", "--dump-dom", checked.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    found = re.search(r'<pre id="browser-check">(.*?)</pre>', dom.stdout, re.DOTALL)
    assert found, dom.stdout[-2000:]
    result = json.loads(found.group(1).replace("&lt;", "<").replace("&gt;", ">")
                        .replace("&amp;", "&"))
    assert result["errors"] == []
    sections = {s["customer"]: s for s in result["sections"]}
    assert set(sections) == set(comparison.source.customers)
    for customer, sim in comparison.source.customers.items():
        expected = 2 * len(sim.units)  # source and target, per unit
        assert sections[customer]["charts"] == expected, customer
        assert sections[customer]["drawn"] == expected, customer
        assert sections[customer]["layers"] >= len(sim.grants), customer
    console = [line for line in dom.stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]
    assert console == []

    shots = tmp_path / "screenshots"
    shots.mkdir()
    shot = run(binary, tmp_path / "profile-shot", f"--screenshot={shots / 'report.png'}",
               plain.as_uri())
    assert shot.returncode == 0, shot.stderr[-2000:]
    assert [line for line in shot.stderr.splitlines() if ":CONSOLE" in line] == []
    png = (shots / "report.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(png) > 10_000  # charts and tables, not a blank page

    # In print (the @media print stylesheet): a PDF with the charts, one page per few customers.
    printed = run(binary, tmp_path / "profile-pdf", f"--print-to-pdf={shots / 'report.pdf'}",
                  "--no-pdf-header-footer", plain.as_uri())
    assert printed.returncode == 0, printed.stderr[-2000:]
    pdf = (shots / "report.pdf").read_bytes()
    assert pdf.startswith(b"%PDF-")
    pages = max(int(n) for n in re.findall(rb"/Count (\d+)", pdf))
    assert pages >= 2  # the summary on a page of its own, then the customers
    assert len(pdf) > 20_000


ARTIFACTS = Path(os.environ.get("BILLING_CREDITS_ARTIFACTS")
                 or Path(__file__).resolve().parents[2] / "build" / "test-artifacts")

# What a reader sees: each named thing drawn with a non-empty box, and where on the page.
SEEN = """<script>
(function () {
  function box(el) { var b = el.getBoundingClientRect(); return {w: b.width, h: b.height,
    top: b.top + window.scrollY}; }
  function seen(selector) { return Array.prototype.map.call(document.querySelectorAll(selector),
    function (el) { var b = box(el); return {text: el.textContent, w: b.w, h: b.h, top: b.top}; }); }
  var out = {charts: [], headings: seen("section.customer h2"), synthetic: seen("p.synthetic"),
             terms: seen("dl.terms"), summary: seen("section.summary"), payments: seen("table.payments"),
             errors: window.__errors};
  document.querySelectorAll("svg.burndown").forEach(function (svg) {
    var section = svg.closest("section.customer");
    var side = svg.closest(".side");
    out.charts.push({customer: section.dataset.customer, unit: svg.dataset.unit,
      xticks: Array.prototype.filter.call(svg.querySelectorAll("text.tx"),
        function (t) { return t.getBBox().width > 0; }).map(function (t) { return t.textContent; }),
      yticks: Array.prototype.filter.call(svg.querySelectorAll("text.ty"),
        function (t) { return t.getBBox().width > 0; }).map(function (t) { return t.textContent; }),
      titles: Array.prototype.filter.call(svg.querySelectorAll("text.axis-title"),
        function (t) { return t.getBBox().width > 0; }).map(function (t) { return t.textContent; }),
      legend: Array.prototype.filter.call(side.querySelectorAll("ul.legend li"),
        function (li) { var b = box(li); return b.w > 0 && b.h > 0; }).map(function (li) {
          return li.textContent; }),
      box: box(svg)});
  });
  var result = document.createElement("pre");
  result.id = "browser-check";
  result.textContent = JSON.stringify(out);
  document.body.appendChild(result);
})();
</script>"""


def two_unit_report() -> tuple[bc.Simulation, str]:
    """Two customers, each with grants in dollars and in a named custom unit, synthetic usage."""
    from datetime import UTC, datetime, timedelta
    from decimal import Decimal

    from .conftest import STRIPE

    start = datetime(2026, 1, 1, tzinfo=UTC)
    cloud = {"unit": {"id": "ccu", "name": "Cloud credits"}}
    grants = []
    for index, (customer, name, amount, money, priority, days) in enumerate((
        ("cus_acme", "Top-up", "50.00", {"currency": "USD"}, 5, 30),
        ("cus_acme", "Welcome", "20.00", {"currency": "USD"}, 5, 60),
        ("cus_acme", "Cloud commit", "300", cloud, 1, 45),
        ("cus_globex", "Annual commit", "1200.00", {"currency": "USD"}, 1, 90),
        ("cus_globex", "Promo", "100", cloud, 2, 20),
    )):
        grants.append(bc.CreditGrant(
            id=f"g{index}", customer_id=customer, name=name, priority=Decimal(priority),
            amount=bc.Money(amount=Decimal(amount), **money),  # type: ignore[arg-type]
            effective_at=start, expires_at=start + timedelta(days=days)))
    simulation = bc.simulate(grants, None, STRIPE, start=start)
    return simulation, simulation.html(
        title="Credit burn-down: stripe",
        customer_names={"cus_acme": "Acme Corp", "cus_globex": "Globex Inc."})


def test_a_two_unit_two_customer_report_as_a_billing_engineer_sees_it(
    tmp_path: Path, record_property: pytest.RecordProperty,
) -> None:
    binary = chromium()
    simulation, report = two_unit_report()
    assert {u for sim in simulation.customers.values() for u in sim.units} == {"USD", "unit:ccu"}
    checked = tmp_path / "checked.html"
    checked.write_text(report.replace("<head>", "<head>" + BEFORE, 1)
                       .replace("</body>", SEEN + "</body>", 1), encoding="utf-8")
    dom = run(binary, tmp_path / "profile-dom", "--window-size=1280,2400", "--dump-dom",
              checked.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    found = re.search(r'<pre id="browser-check">(.*?)</pre>', dom.stdout, re.DOTALL)
    assert found, dom.stdout[-2000:]
    seen = json.loads(found.group(1).replace("&lt;", "<").replace("&gt;", ">")
                      .replace("&amp;", "&"))
    assert seen["errors"] == []

    # names, not ids: the customers' names (with the id beside), the unit's name
    headings = [h["text"] for h in seen["headings"] if h["w"] > 0 and h["h"] > 0]
    assert headings == ["Acme Corp cus_acme", "Globex Inc. cus_globex"]
    # a chart per customer and unit, each with time and value ticks, axis titles and a legend
    charts = {(c["customer"], c["unit"]): c for c in seen["charts"]}
    assert set(charts) == {("cus_acme", "USD"), ("cus_acme", "unit:ccu"),
                           ("cus_globex", "USD"), ("cus_globex", "unit:ccu")}
    for (customer, unit), chart in charts.items():
        assert chart["box"]["w"] > 300, (customer, unit)
        assert chart["box"]["h"] > 120, (customer, unit)
        assert len(chart["xticks"]) == 4, chart
        assert chart["xticks"][0].startswith("2026-"), chart
        assert chart["yticks"][0] == "0", chart
        assert len(chart["yticks"]) == 3, chart
        units = "USD" if unit == "USD" else "Cloud credits (ccu)"
        assert chart["titles"] == ["time (UTC)", f"balance ({units})"], chart
        names = {g.name for g in simulation.customers[customer].grants if g.unit == unit}
        assert set(chart["legend"]) == names, chart
    # the usage is said to be synthetic, and how it was made, where a reader starts
    synthetic = seen["synthetic"]
    assert len(synthetic) == 1
    assert synthetic[0]["h"] > 0
    assert synthetic[0]["top"] < 400
    assert synthetic[0]["text"].startswith("Usage is synthetic, not the customers' real usage")
    assert "24 equal draws" in synthetic[0]["text"]
    assert "lost" in seen["terms"][0]["text"]
    assert "expired unused" in seen["terms"][0]["text"]
    # the summary (written last) is shown above the customers; who paid for which usage
    first_customer = min(h["top"] for h in seen["headings"])
    assert seen["summary"][0]["top"] < first_customer
    assert len(seen["payments"]) == 4
    assert all(p["h"] > 0 for p in seen["payments"])

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "report-two-units.html").write_text(report, encoding="utf-8")
    shot_path = ARTIFACTS / "report-two-units.png"
    shot_path.unlink(missing_ok=True)
    shot = run(binary, tmp_path / "profile-shot", "--window-size=1280,2400",
               f"--screenshot={shot_path}", (ARTIFACTS / "report-two-units.html").as_uri())
    assert shot.returncode == 0, shot.stderr[-2000:]
    png = shot_path.read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(png) > 50_000  # charts, tables and text, not a blank page
    record_property("screenshot", str(shot_path))
    SCREENSHOTS.append(str(shot_path))
    print(f"screenshot of the two-unit, two-customer report: {shot_path}")


SCREENSHOTS: list[str] = []
"""Screenshots written this session (printed in the terminal summary by ``conftest``)."""
