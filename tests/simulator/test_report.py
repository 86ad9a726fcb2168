"""The HTML report's structure: self-contained, a chart per customer, side and unit, the
customers that differ first and in a summary, everything escaped, readable in print."""

from __future__ import annotations

from html.parser import HTMLParser

import billing_credits as bc


class Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def all(self, tag: str, **attrs: str) -> list[dict[str, str | None]]:
        return [a for t, a in self.tags if t == tag
                and all(name in a and value in (a[name] or "").split() for name, value in attrs.items())]


def parse(text: str) -> Page:
    page = Page()
    page.feed(text)
    return page


def test_the_report_is_self_contained(comparison: bc.Comparison) -> None:
    text = comparison.html()
    page = parse(text)
    assert text.startswith("<!DOCTYPE html>")
    assert not page.all("script")
    assert not page.all("link")
    assert not page.all("img")
    assert not page.all("iframe")
    for _, attrs in page.tags:
        assert "src" not in attrs
        assert (attrs.get("href") or "#").startswith("#")
        assert not any(name.startswith("on") for name in attrs)
    assert "url(" not in text
    assert "@import" not in text
    assert "http://" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in text
    assert "@media print" in text


def test_every_customer_has_a_chart_per_side_and_unit_differences_first(
    comparison: bc.Comparison,
) -> None:
    page = parse(comparison.html())
    sections = page.all("section", **{"class": "customer"})
    customers = [s["data-customer"] for s in sections]
    assert sorted(customers) == sorted(comparison.source.customers)
    assert customers[0] == "cus_tie"  # the one that differs comes first
    assert [s["data-differs"] for s in sections] == ["true"] + ["false"] * (len(sections) - 1)
    charts = page.all("svg", **{"class": "burndown"})
    units = {c: len(sim.units) for c, sim in comparison.source.customers.items()}
    assert len(charts) == 2 * sum(units.values())  # source and target, per unit
    assert {c["data-side"] for c in charts} == {"source (metronome-plans)", "target (stripe)"}
    assert {c["data-unit"] for c in charts} == {"USD", "EUR"}
    layers = page.all("path", **{"class": "layer"})
    # One filled layer per grant, per side; the same grant has the same colour on both sides.
    assert len(layers) == 2 * sum(len(sim.grants) for sim in comparison.source.customers.values())
    colours: dict[str | None, set[str | None]] = {}
    for layer in layers:
        colours.setdefault(layer["data-grant"], set()).add(layer["fill"])
    assert all(len(fills) == 1 for fills in colours.values())


def test_the_summary_names_each_differing_customer_and_the_rule(comparison: bc.Comparison) -> None:
    assert [d.customer_id for d in comparison.differences] == ["cus_tie"]
    page = parse(comparison.html())
    assert page.all("table", **{"class": "differences"})
    text = " ".join(page.text)
    assert "metronome-plans breaks the tie between Top-up and Welcome on expires_at" in text
    assert "burn order differs" in text


def test_customer_and_grant_names_are_escaped(comparison: bc.Comparison) -> None:
    text = comparison.html()
    assert '<script>alert("x")</script>' not in text
    assert "&lt;script&gt;" in text
    assert "Hostile &lt;b&gt;" in text


def test_a_single_simulation_renders_one_chart_per_customer(comparison: bc.Comparison) -> None:
    page = parse(comparison.source.html(title="One side"))
    charts = page.all("svg", **{"class": "burndown"})
    assert len(charts) == sum(len(s.units) for s in comparison.source.customers.values())
    assert not page.all("script")
