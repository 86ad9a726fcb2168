"""Benchmark 2: translation cost per grant, against the official SDK merely parsing the JSON.

Two paths, each per grant, with the providers' pure translation functions (no I/O):

- Metronome ``listGrants`` item -> neutral ``CreditGrant`` -> Stripe create parameters:
  ``billing_credits_metronome._translate.grant_from_item``, ``CreditGrant.as_new`` (what a
  migration creates from a read-back grant), ``billing_credits_stripe._translate.create_params``;
  against ``metronome.types.v1.CreditGrantListResponse.model_validate(item)``. For context,
  what metronome-sdk's client itself does with a response (``_process_response_data`` in
  ``metronome/_base_client.py``) is measured beside it: ``validate_type`` when the client was
  made with ``_strict_response_validation=True`` (model_validate behind a small wrapper), and
  by default ``construct_type``, an unvalidated build in Python, many times slower. The
  baseline stays the bare ``model_validate``: the strictest of the three.
- Stripe ``billing.credit_grant`` object -> neutral -> Metronome ``createGrant`` body:
  ``billing_credits_stripe._translate.from_stripe``, ``as_new``,
  ``billing_credits_metronome._translate.grant_create_payload``; against
  ``stripe.billing.CreditGrant.construct_from(obj, key)`` (what the SDK does with a response).
  The Stripe provider receives SDK objects, so its real read path also includes that parse and
  ``to_dict()``: reported too (``ours_with_sdk_parse``).

The inputs are the fakes' own responses (varied grants: amounts, priorities, paid amounts,
custom fields / metadata, deductions), decoded once beforehand by each side's own JSON decoder
(Decimal floats for ours, as the Metronome transport decodes; plain ``json`` for the SDKs).
Each figure is the best of ``--repeats`` passes over all grants, SDK and ours interleaved, each
pass timed in CPU seconds of this process (``time.process_time``: a shared machine disturbs it
far less than wall time).

Run: .venv/bin/python benchmarks/translation.py [--grants 1000] [--repeats 7]
Default run: under a minute.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import httpx
import stripe
from _common import API_KEY, emit, machine, seed_metronome
from billing_credits_metronome import _translate as metronome_tr
from billing_credits_metronome._transport import dumps, loads
from billing_credits_metronome.testing import MetronomeFake
from billing_credits_orb import OrbProvider
from billing_credits_orb import _translate as orb_tr
from billing_credits_orb.testing import OrbFake, dumps_exact
from billing_credits_stripe import StripeProvider
from billing_credits_stripe import _translate as stripe_tr
from billing_credits_stripe.testing import StripeFake
from metronome._models import construct_type, validate_type
from metronome.types.v1 import CreditGrantListResponse
from orb._models import construct_type as orb_construct_type
from orb._models import validate_type as orb_validate_type
from orb.types.customers import CreditListResponse as OrbBlock

import billing_credits as bc

NOW = datetime.now(UTC)
CONFIG = metronome_tr.TranslationConfig(provider="metronome-plans")


def metronome_items(count: int) -> list[bytes]:
    """``count`` listGrants items as the fake sends them (JSON bytes, one per item), varied."""
    fake = MetronomeFake()
    seed_metronome(fake, count, customers=max(1, count // 20), now=NOW)
    for i, (grant_id, grant) in enumerate(fake.grants.items()):
        if i % 3 == 0:
            grant.item["custom_fields"] = {"team": f"team-{i % 7}", "plan": "enterprise"}
        if i % 4 == 0:
            fake.deduct(grant_id, 100 + i % 50)
        if i % 5 == 0:
            fake.deduct(grant_id, 25, pending=True)
    items: list[bytes] = []
    cursor: str | None = None
    while True:
        query = {"limit": "100", **({"next_page": cursor} if cursor else {})}
        page = fake._list_grants(query, {})
        items.extend(dumps(item) for item in page["data"])
        cursor = page["next_page"]
        if not cursor:
            return items


def metronome_grants(items: list[bytes]) -> list[bc.CreditGrant]:
    return [metronome_tr.grant_from_item(loads(raw), CONFIG, NOW, provider="metronome-plans")
            for raw in items]


def stripe_objects(grants: list[bc.CreditGrant]) -> list[bytes]:
    """The grants created on the Stripe fake through the Stripe provider (JSON bytes)."""
    fake = StripeFake()
    provider = StripeProvider(API_KEY, base_url="http://127.0.0.1:9", rate_limit=0,
                              http_client=httpx.Client(transport=fake.transport()))
    for i, grant in enumerate(grants):
        update: dict[str, Any] = {"idempotency_key": f"bench-{i}"}
        if i % 2 == 0:
            update["paid_amount"] = grant.amount
        provider.create_grant(grant.as_new(**update))
    provider.close()
    return [json.dumps(obj).encode() for obj in fake.grants.values()]


def _day(moment: datetime | None) -> datetime | None:
    return None if moment is None else moment.replace(hour=0, minute=0, second=0, microsecond=0)


def orb_blocks(grants: list[bc.CreditGrant]) -> list[bytes]:
    """The grants created on the Orb fake through the Orb provider, as whole UTC days (Orb
    holds dates) without a priority (Orb has none), every other one paid: each block as the
    fake lists it (JSON bytes)."""
    fake = OrbFake(clock=NOW.timestamp, seed=2026)
    customers: dict[str, str] = {}
    with OrbProvider(API_KEY, base_url="http://127.0.0.1:9/v1", rate_limit=0, clock=lambda: NOW,
                     http_client=httpx.Client(transport=fake.transport())) as provider:
        for i, grant in enumerate(grants):
            if grant.customer_id not in customers:
                customers[grant.customer_id] = fake.add_customer(grant.customer_id)
            provider.create_grant(grant.as_new(
                customer_id=customers[grant.customer_id], idempotency_key=f"bench-{i}",
                priority=None, effective_at=_day(grant.effective_at),
                expires_at=_day(grant.expires_at), paid_amount=grant.amount if i % 2 else None))
    return [dumps_exact(block.json()) for block in fake.blocks.values()]


def pages(raw: list[bytes], decode: Callable[[bytes], Any]) -> list[Any]:
    """``raw`` items decoded as a listing's pages of 100 are (``decode`` of each page)."""
    return [item for start in range(0, len(raw), 100)
            for item in decode(b'{"data":[' + b",".join(raw[start:start + 100]) + b"]}")["data"]]


def best(passes: list[float], count: int) -> float:
    """Microseconds per grant of the fastest pass."""
    return min(passes) / count * 1e6


def timed(fn: Callable[[Any], Any], inputs: list[Any]) -> float:
    gc.collect()
    started = time.process_time()
    for value in inputs:
        fn(value)
    return time.process_time() - started


def compare(name: str, ours: dict[str, Callable[[Any], Any]], sdk: Callable[[Any], Any],
            ours_inputs: list[Any], sdk_inputs: list[Any], repeats: int,
            what: dict[str, str], clients: dict[str, Callable[[Any], Any]] | None = None) -> None:
    """Each of ``ours`` against ``sdk`` (the baseline); ``clients`` are the SDK client's own
    response paths, measured the same way and quoted for context beside the baseline."""
    clients = clients or {}
    sdk_passes: list[float] = []
    our_passes: dict[str, list[float]] = {key: [] for key in ours}
    client_passes: dict[str, list[float]] = {key: [] for key in clients}
    for fn in (*ours.values(), sdk, *clients.values()):  # warm up: imports, caches, schemas
        for value in (ours_inputs if fn in ours.values() else sdk_inputs)[:20]:
            fn(value)
    for _ in range(repeats):
        sdk_passes.append(timed(sdk, sdk_inputs))
        for key, fn in ours.items():
            our_passes[key].append(timed(fn, ours_inputs))
    for _ in range(repeats):  # after: context only, kept out of the baseline's own passes
        for key, fn in clients.items():
            client_passes[key].append(timed(fn, sdk_inputs))
    count = len(sdk_inputs)
    sdk_us = best(sdk_passes, count)
    record: dict[str, Any] = {"benchmark": f"translation.{name}", "grants": count,
                              "repeats": repeats, **what, "sdk_parse_us_per_grant": round(sdk_us, 1)}
    for key, passes in our_passes.items():
        us = best(passes, count)
        record[f"{key}_us_per_grant"] = round(us, 1)
        record[f"{key}_over_sdk_parse"] = round(us / sdk_us, 2)
    ours_us = best(our_passes["ours"], count)
    for key, passes in client_passes.items():
        us = best(passes, count)
        record[f"{key}_us_per_grant"] = round(us, 1)
        record[f"ours_over_{key}"] = round(ours_us / us, 2)
    emit(record)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grants", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="200 grants, 3 passes (CI)")
    args = parser.parse_args()
    if args.quick:
        args.grants, args.repeats = 200, 3
    emit(machine())

    m_raw = metronome_items(args.grants)
    m_grants = metronome_grants(m_raw)
    s_raw = stripe_objects(m_grants)
    # Decoded as the transport decodes a listing page: Decimal floats, and the page's text
    # checked once (``bc.decode_vendor_json``), its items marked as known-valid text.
    m_ours = pages(m_raw, loads)
    m_sdk = [json.loads(raw) for raw in m_raw]  # what the SDK's client decodes
    s_dicts = [json.loads(raw) for raw in s_raw]
    o_raw = orb_blocks(m_grants)
    o_ours = pages(o_raw, lambda page: bc.decode_vendor_json(page, parse_float=Decimal))
    o_sdk = [json.loads(raw) for raw in o_raw]
    o_dicts = [json.loads(raw) for raw in stripe_objects(
        [orb_tr.from_block(block, currency="USD", now=NOW) for block in o_ours])]

    def metronome_to_stripe(item: Any) -> Any:
        grant = metronome_tr.grant_from_item(item, CONFIG, NOW, provider="metronome-plans")
        return stripe_tr.create_params(grant.as_new())

    def stripe_to_metronome(obj: Any) -> Any:
        grant = stripe_tr.from_stripe(obj, now=NOW)
        return metronome_tr.grant_create_payload(grant.as_new(), f"bcm-{grant.id}", CONFIG, NOW)

    def stripe_sdk_then_ours(obj: Any) -> Any:
        parsed = stripe.billing.CreditGrant.construct_from(obj, API_KEY)
        return stripe_to_metronome(parsed.to_dict())

    compare(
        "metronome_to_stripe",
        {"ours": metronome_to_stripe,
         "ours_read_only": lambda item: metronome_tr.grant_from_item(
             item, CONFIG, NOW, provider="metronome-plans")},
        CreditGrantListResponse.model_validate, m_ours, m_sdk, args.repeats,
        {"ours_path": "grant_from_item -> as_new -> stripe create_params",
         "ours_read_only_path": "grant_from_item (vendor JSON -> neutral only)",
         "sdk_path": "metronome CreditGrantListResponse.model_validate(item)",
         "sdk_client_strict_path": "validate_type(...): the client with "
         "_strict_response_validation=True (metronome/_base_client.py _process_response_data)",
         "sdk_client_default_path": "construct_type(...): the client's default, unvalidated"},
        clients={
            "sdk_client_strict": lambda item: validate_type(
                type_=CreditGrantListResponse, value=item),
            "sdk_client_default": lambda item: construct_type(
                type_=CreditGrantListResponse, value=item),
        },
    )
    compare(
        "stripe_to_metronome",
        {"ours": stripe_to_metronome,
         "ours_read_only": lambda obj: stripe_tr.from_stripe(obj, now=NOW),
         "ours_with_sdk_parse": stripe_sdk_then_ours},
        lambda obj: stripe.billing.CreditGrant.construct_from(obj, API_KEY),
        s_dicts, s_dicts, args.repeats,
        {"ours_path": "from_stripe -> as_new -> metronome grant_create_payload",
         "ours_read_only_path": "from_stripe (vendor JSON -> neutral only)",
         "ours_with_sdk_parse_path": "CreditGrant.construct_from -> to_dict -> ours_path "
         "(the Stripe provider's real read path)",
         "sdk_path": "stripe.billing.CreditGrant.construct_from(obj, key)"},
    )

    compare(
        "orb_to_stripe",
        {"ours": lambda block: stripe_tr.create_params(
            orb_tr.from_block(block, currency="USD", now=NOW).as_new()),
         "ours_read_only": lambda block: orb_tr.from_block(block, currency="USD", now=NOW)},
        OrbBlock.model_validate, o_ours, o_sdk, args.repeats,
        {"ours_path": "from_block -> as_new -> stripe create_params",
         "ours_read_only_path": "from_block (vendor JSON -> neutral only)",
         "sdk_path": "orb customers.CreditListResponse.model_validate(block)",
         "sdk_client_strict_path": "validate_type(...): orb-billing's client with "
         "_strict_response_validation=True",
         "sdk_client_default_path": "construct_type(...): the client's default, unvalidated"},
        clients={
            "sdk_client_strict": lambda block: orb_validate_type(type_=OrbBlock, value=block),
            "sdk_client_default": lambda block: orb_construct_type(type_=OrbBlock, value=block),
        },
    )
    compare(
        "stripe_to_orb",
        {"ours": lambda obj: orb_tr.increment_params(stripe_tr.from_stripe(obj, now=NOW).as_new()),
         "ours_read_only": lambda obj: stripe_tr.from_stripe(obj, now=NOW)},
        lambda obj: stripe.billing.CreditGrant.construct_from(obj, API_KEY),
        o_dicts, o_dicts, args.repeats,
        {"ours_path": "from_stripe -> as_new -> orb increment_params",
         "ours_read_only_path": "from_stripe (vendor JSON -> neutral only)",
         "sdk_path": "stripe.billing.CreditGrant.construct_from(obj, key)"},
    )


if __name__ == "__main__":
    main()
