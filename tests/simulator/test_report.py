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


# -- issue 20.4: a report people can read ------------------------------------------------------

START = __import__("datetime").datetime(2026, 1, 1, tzinfo=__import__("datetime").UTC)


def _grant(gid: str, customer: str, name: str, amount: str, days: int, *,
           priority: int = 1, unit: dict[str, object] | None = None) -> bc.CreditGrant:
    from datetime import timedelta
    from decimal import Decimal

    return bc.CreditGrant(
        id=gid, customer_id=customer, name=name, priority=Decimal(priority),
        amount=bc.Money(amount=Decimal(amount), **(unit or {"currency": "USD"})),  # type: ignore[arg-type]
        effective_at=START, expires_at=START + timedelta(days=days))


def _usage(customer: str, amount: str, hours: int, unit: dict[str, object] | None = None) -> bc.Usage:
    from datetime import timedelta
    from decimal import Decimal

    return bc.Usage(customer_id=customer, at=START + timedelta(hours=hours),
                    amount=bc.Money(amount=Decimal(amount), **(unit or {"currency": "USD"})),  # type: ignore[arg-type]
                    reference=f"u{hours}")


CLOUD = {"unit": {"id": "ccu", "name": "Cloud credits"}}


def test_the_burn_order_is_collapsed_and_shown_per_unit() -> None:
    """18 top-ups drawn in turn read ``Top-up ×18``; a second unit's draws, interleaved in
    time, do not break the first unit's order."""
    from .conftest import STRIPE

    grants = [_grant(f"g{i:02d}", "c", "Top-up", "1.00", 30 + i) for i in range(18)]
    grants.append(_grant("z", "c", "Cloud commit", "50", 30, unit=CLOUD))
    usage = []
    for hour in range(18):
        usage.append(_usage("c", "1.00", 2 * hour))
        usage.append(_usage("c", "1", 2 * hour + 1, CLOUD))
    simulation = bc.simulate(grants, usage, STRIPE)
    text = " ".join(parse(simulation.html()).text)
    assert "burn order: Top-up ×18" in text
    assert "burn order: Cloud commit" in text
    assert "Top-up → Top-up" not in text
    assert "Top-up ×18 → Cloud commit" not in text


def test_the_report_says_how_synthetic_usage_was_made_and_what_lost_means(
    comparison: bc.Comparison,
) -> None:
    from .conftest import STRIPE

    grants = [_grant("g1", "c", "Only", "10.00", 20)]
    synthetic = " ".join(parse(bc.simulate(grants, None, STRIPE, start=START).html()).text)
    assert ("Usage is synthetic, not the customers' real usage: per customer and unit, 24 "
            "equal draws") in synthetic
    assert "lost credit that expired unused" in synthetic
    given = " ".join(parse(bc.simulate(grants, [_usage("c", "1.00", 1)], STRIPE).html()).text)
    assert "Usage is synthetic" not in given
    assert "lost credit that expired unused" in given
    # a migration plan simulated on synthetic usage says so too
    assert "Usage is synthetic" in " ".join(parse(comparison.html()).text)


def test_the_report_names_who_paid_for_which_usage_and_what_nothing_covered() -> None:
    from .conftest import STRIPE

    grants = [_grant("g1", "c", "Welcome", "5.00", 20)]
    usage = [_usage("c", "2.00", 1), _usage("c", "2.00", 2), _usage("c", "3.00", 3)]
    page = parse(bc.simulate(grants, usage, STRIPE).html())
    assert page.all("table", **{"class": "payments"})
    text = " ".join(" ".join(page.text).split())
    assert "2026-01-01 01:00 – 2026-01-01 02:00" in text  # two events paid the same way
    assert "Welcome 4.00" in text
    assert "Welcome 1.00, not covered 2.00" in text
    assert "not covered: 2.00 USD of usage no grant could pay" in text
    assert "1 customer(s) with usage no grant could cover" in text


def test_the_report_shows_unit_and_customer_names_and_axes() -> None:
    from .conftest import STRIPE

    grants = [_grant("g1", "cus_1", "Cloud commit", "300", 20, unit=CLOUD)]
    html = bc.simulate(grants, None, STRIPE, start=START).html(customer_names={"cus_1": "Acme"})
    page = parse(html)
    text = " ".join(page.text)
    assert "Acme" in text
    assert "cus_1" in text  # the id beside the name
    assert "balance (Cloud credits (ccu))" in text
    assert "time (UTC)" in text
    assert len(page.all("text", **{"class": "ty"})) == 3  # value ticks: 0, half, top
    assert len(page.all("text", **{"class": "tx"})) == 4  # time ticks
    assert page.all("ul", **{"class": "legend"})
    assert "2026-01-01 00:00 UTC" in text  # times carry their zone


def test_a_report_of_totals_beyond_28_digits_renders_exactly_labelled() -> None:
    """A unit whose total has more digits than the default decimal context holds (10^29 and
    more: 40-digit custom units, or many large grants): the chart's axis labels it, no
    ``decimal.InvalidOperation`` (the half mark was once quantized in 28 digits)."""
    from decimal import Decimal

    from .conftest import STRIPE

    for amount in ("1E+29", "9" * 39):
        grants = [_grant("g1", "cus_big", "Big", amount, 30), _grant("g2", "cus_big", "Small",
                                                                      "0.0001", 30)]
        page = bc.simulate(grants, [_usage("cus_big", "1", 1)], STRIPE).html()
        total = bc.exact_sum([Decimal(amount), Decimal("0.0001")])
        assert f"{total:f}" in page.replace(",", "")
