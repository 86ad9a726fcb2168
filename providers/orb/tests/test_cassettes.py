"""Recorded Orb conversations (vcrpy), replayed offline with record mode ``none``.

The cassettes under ``cassettes/orb/`` were recorded against ``OrbFake`` served on loopback,
the host rewritten to ``api.withorb.com`` (no Orb account is reachable where they were made);
``cassettes/orb/README.md`` says how to re-record them. Bodies are part of the match,
credentials and volatile headers are filtered, every interaction is played exactly once, and
every response parses with the ``orb-billing`` SDK's models.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import vcr
import yaml
from billing_credits_orb import OrbProvider
from billing_credits_orb.testing import OrbFake
from orb.types import Customer
from orb.types.credit_block_retrieve_response import CreditBlockRetrieveResponse
from orb.types.customers.credit_list_response import CreditListResponse
from orb.types.customers.credits.ledger_create_entry_response import LedgerCreateEntryResponse
from orb.types.customers.credits.ledger_list_response import LedgerListResponse
from pydantic import TypeAdapter
from vcr.request import Request

import billing_credits as bc

CASSETTES = Path(__file__).resolve().parents[3] / "cassettes" / "orb"
SIDECAR = CASSETTES / "recording.json"
RECORDING = os.environ.get("BILLING_CREDITS_RECORD") == "1"
FAKE_CLOCK = 1_767_225_600 + 86_400 * 40  # 2026-02-10T00:00:00Z, the fake's "now"
START = datetime(2026, 1, 1, tzinfo=UTC)
SECRET_MARKERS = ("orb_test_", "Bearer ")


def rewrite_host(request: Request) -> Request:
    parts = urlsplit(request.uri)
    if parts.hostname in ("127.0.0.1", "localhost"):
        query = f"?{parts.query}" if parts.query else ""
        request.uri = f"https://api.withorb.com{parts.path}{query}"
    for name in list(request.headers):
        if name.lower() == "host":
            request.headers[name] = "api.withorb.com"
    return request


def scrub_response(response: dict[str, Any]) -> dict[str, Any]:
    for name in list(response["headers"]):
        if name.lower() in ("idempotency-key", "date", "server", "connection"):
            del response["headers"][name]
    return response


def make_vcr(record_mode: str) -> vcr.VCR:
    return vcr.VCR(
        cassette_library_dir=str(CASSETTES), serializer="yaml", record_mode=record_mode,
        match_on=["method", "scheme", "host", "port", "path", "query", "body"],
        filter_headers=[("authorization", "REDACTED"), ("idempotency-key", None),
                        ("user-agent", None), ("x-stainless-os", None),
                        ("x-stainless-arch", None), ("x-stainless-runtime-version", None),
                        ("x-stainless-async", None), ("x-stainless-read-timeout", None)],
        before_record_request=rewrite_host, before_record_response=scrub_response,
        decode_compressed_response=True)


@pytest.fixture
def record_mode(request: pytest.FixtureRequest) -> str:
    mode = str(request.config.getoption("--record-mode", default="none") or "none")
    return mode if RECORDING else "none"


@pytest.fixture
def orb_provider(record_mode: str) -> Iterator[tuple[OrbProvider, dict[str, Any]]]:
    """Playback: the provider aimed at api.withorb.com (vcrpy answers, no socket opens).
    Recording: at the fake on loopback (or at Orb with ORB_API_KEY and ORB_TEST_CUSTOMER)."""
    runtime = bc.Runtime(retry=bc.RetryPolicy(attempts=1))
    if record_mode == "none":
        params = json.loads(SIDECAR.read_text())
        clock = datetime.fromtimestamp(params["clock"], UTC)
        with OrbProvider("orb_cassette_playback", runtime=runtime,
                         clock=lambda: clock) as provider:
            yield provider, params
        return
    real_key = os.environ.get("ORB_API_KEY")
    if real_key:
        params = {"source": "Orb test mode", "customer": os.environ["ORB_TEST_CUSTOMER"],
                  "clock": int(datetime.now(UTC).timestamp())}
        with OrbProvider(real_key, runtime=runtime) as provider:
            yield provider, params
        SIDECAR.write_text(json.dumps(params, indent=2) + "\n")
        return
    fake = OrbFake(clock=lambda: FAKE_CLOCK, seed=2026)
    customer = fake.add_customer("cus_cassette")
    params = {"source": "billing_credits_orb.testing.OrbFake on loopback",
              "customer": customer, "clock": FAKE_CLOCK}
    with fake.serve() as server, OrbProvider(
            "orb_cassette_recording", base_url=f"{server.url}/v1", runtime=runtime,
            clock=lambda: datetime.fromtimestamp(FAKE_CLOCK, UTC)) as provider:
        yield provider, params
    SIDECAR.write_text(json.dumps(params, indent=2) + "\n")


@contextmanager
def cassette(name: str, record_mode: str) -> Iterator[Any]:
    if record_mode == "rewrite":
        (CASSETTES / f"{name}.yaml").unlink(missing_ok=True)
        record_mode = "once"
    with make_vcr(record_mode).use_cassette(f"{name}.yaml", allow_playback_repeats=False) as played:
        yield played
    if record_mode == "none":
        assert played.all_played, f"unused interactions in {name}.yaml"
        assert played.play_count == len(played.data)


def grant(customer: str, n: int, **changes: Any) -> bc.CreditGrant:
    data: dict[str, Any] = {
        "customer_id": customer, "amount": bc.Money(amount=Decimal("15.00") + n, currency="USD"),
        "name": f"Cassette grant {n}", "reason": "recorded example",
        "paid_amount": bc.Money(amount=Decimal("7.50") + n, currency="USD") if n % 2 else None,
        "effective_at": START, "expires_at": START + timedelta(days=365 + n),
        "metadata": {"case": f"c{n}"}, "idempotency_key": f"cassette-{customer}-{n}"}
    data.update(changes)
    return bc.CreditGrant.model_validate(data)


def test_lifecycle(orb_provider: tuple[OrbProvider, dict[str, Any]], record_mode: str) -> None:
    provider, params = orb_provider
    customer = params["customer"]
    with cassette("lifecycle", record_mode):
        created = [provider.create_grant(grant(customer, n)) for n in range(3)]
        for n, stored in enumerate(created):
            assert stored.as_new() == grant(customer, n)
        listed = list(provider.list_grants(customer, page_size=2))
        assert [g.id for g in listed] == [g.id for g in created]
        one = created[0].id or ""
        assert provider.get_grant(one) == created[0]
        usable = provider.get_balance(customer)[0].usable
        assert usable == bc.Money(amount=Decimal(48), currency="USD")
        used = provider.consume(customer, bc.Money(amount=Decimal("20"), currency="USD"),
                                reference="cassette-usage")
        assert [(e.grant_id, e.amount.amount) for e in used] == [
            (created[0].id, Decimal(-15)), (created[1].id, Decimal(-5))]
        kinds = [e.kind for e in provider.list_ledger(customer)]
        assert kinds.count(bc.LedgerKind.GRANTED) == 3
        assert provider.update_grant(one, metadata={"case": "updated"}).metadata == {
            "case": "updated"}
        assert provider.void_grant(created[2].id or "").status is bc.GrantStatus.VOIDED
        assert provider.expire_grant(created[1].id or "").status is bc.GrantStatus.EXPIRED


def test_errors(orb_provider: tuple[OrbProvider, dict[str, Any]], record_mode: str) -> None:
    provider, params = orb_provider
    customer = params["customer"]
    with cassette("errors", record_mode):
        with pytest.raises(bc.NotFoundError) as missing:
            provider.get_grant("doesNotExist0000")
        assert missing.value.code == "404-resource-not-found"
        first = provider.create_grant(grant(customer, 9, idempotency_key="cassette-conflict"))
        assert first.replayed is False
        with pytest.raises(bc.ConflictError):  # found by the lookup, other parameters
            provider.create_grant(grant(customer, 10, idempotency_key="cassette-conflict"))
        provider.find_existing_before_create = False
        try:
            replay = provider.create_grant(grant(customer, 9, idempotency_key="cassette-conflict"))
        finally:
            provider.find_existing_before_create = True
        assert (replay.id, replay.replayed) == (first.id, True), "Idempotent-Replayed: true"


def interactions() -> list[tuple[str, dict[str, Any]]]:
    return [(path.name, item) for path in sorted(CASSETTES.glob("*.yaml"))
            for item in yaml.safe_load(path.read_text())["interactions"]]


def test_cassettes_exist_and_hold_no_credentials() -> None:
    assert sorted(p.name for p in CASSETTES.glob("*.yaml")) == ["errors.yaml", "lifecycle.yaml"]
    for path in CASSETTES.glob("*.yaml"):
        text = path.read_text()
        for marker in SECRET_MARKERS:
            assert marker not in text, f"{marker!r} in {path.name}"
        assert "127.0.0.1" not in text
        assert "idempotency-key:" not in text.lower().replace("- ", "")


ENTRY = TypeAdapter(LedgerCreateEntryResponse)
LISTED = TypeAdapter(LedgerListResponse)


def test_every_cassette_response_parses_with_the_sdk_models() -> None:
    """Each body by its endpoint, with the SDK's pydantic models (``model_validate``)."""
    seen = set()
    for name, item in interactions():
        path = urlsplit(item["request"]["uri"]).path.removeprefix("/v1")
        body = json.loads(item["response"]["body"]["string"])
        status = item["response"]["status"]["code"]
        method = item["request"]["method"]
        if status >= 400:
            assert body["type"].startswith("https://docs.withorb.com/reference/error-responses#")
            seen.add("error")
        elif path.endswith("/credits/ledger_entry"):
            ENTRY.validate_python(body)
            seen.add("ledger_entry")
        elif path.endswith("/credits/ledger"):
            for entry in body["data"]:
                LISTED.validate_python(entry)
            seen.add("ledger")
        elif path.endswith("/credits"):
            for block in body["data"]:
                CreditListResponse.model_validate(block)
            seen.add("credits")
        elif path.startswith("/credit_blocks/"):
            CreditBlockRetrieveResponse.model_validate(body)
            seen.add(f"credit_block {method}")
        elif path.startswith("/customers/"):
            Customer.model_validate(body)
            seen.add("customer")
        else:
            pytest.fail(f"{name}: no model for {method} {path}")
    assert seen == {"error", "ledger_entry", "ledger", "credits", "credit_block GET",
                    "credit_block PUT", "customer"}


def test_every_cassette_request_is_to_orb_with_the_key_redacted() -> None:
    for name, item in interactions():
        request = item["request"]
        assert urlsplit(request["uri"]).netloc == "api.withorb.com", name
        headers = {k.lower(): v for k, v in request["headers"].items()}
        assert headers["authorization"] == ["REDACTED"]


def test_playback_is_strict(orb_provider: tuple[OrbProvider, dict[str, Any]],
                            record_mode: str) -> None:
    """A request not in the cassette fails (no network fallback), so does a changed body, and
    leaving interactions unplayed fails."""
    if record_mode != "none":
        pytest.skip("playback only")
    provider, _params = orb_provider
    with pytest.raises(AssertionError, match="unused interactions"), cassette("errors", "none"):
        pass
    with make_vcr("none").use_cassette("errors.yaml", allow_playback_repeats=False), \
            pytest.raises(bc.ProviderError):
        provider.get_grant("notInTheCassette")
