"""Recorded Stripe conversations (vcrpy), replayed offline with record mode ``none``.

The cassettes under ``cassettes/stripe/`` were recorded against ``StripeFake`` served on
loopback, with the host rewritten to ``api.stripe.com`` (no Stripe account is reachable where
they were made); ``cassettes/stripe/README.md`` says how to re-record them against a real
Stripe sandbox. Bodies are part of the match, credentials and volatile headers are filtered,
and every interaction must be played exactly once.
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
from urllib.parse import parse_qsl, urlsplit

import pytest
import stripe
import vcr
import yaml
from billing_credits_stripe import StripeProvider
from billing_credits_stripe.testing import StripeFake, undeclared_params
from stripe_sdk_shapes import error_problems, shape_problems
from vcr.request import Request

import billing_credits as bc

CASSETTES = Path(__file__).resolve().parents[3] / "cassettes" / "stripe"
SIDECAR = CASSETTES / "recording.json"
RECORDING = os.environ.get("BILLING_CREDITS_RECORD") == "1"
FAKE_CLOCK = 1_767_225_600 + 86_400 * 40  # 2026-02-10T00:00:00Z, the fake's "now"
START = datetime(2026, 1, 1, tzinfo=UTC)
SECRET_MARKERS = ("sk_test_", "sk_live_", "rk_test_", "rk_live_", "Bearer")


def rewrite_host(request: Request) -> Request:
    """Recorded against the loopback fake, stored as Stripe's host."""
    parts = urlsplit(request.uri)
    if parts.hostname in ("127.0.0.1", "localhost"):
        query = f"?{parts.query}" if parts.query else ""
        request.uri = f"https://api.stripe.com{parts.path}{query}"
    for name in list(request.headers):
        if name.lower() == "host":
            request.headers[name] = "api.stripe.com"
    return request


def scrub_response(response: dict[str, Any]) -> dict[str, Any]:
    """Drop response headers that echo request secrets or vary between recordings."""
    for name in list(response["headers"]):
        if name.lower() in ("idempotency-key", "date", "server", "connection"):
            del response["headers"][name]
    return response


def make_vcr(record_mode: str) -> vcr.VCR:
    return vcr.VCR(
        cassette_library_dir=str(CASSETTES),
        serializer="yaml",
        record_mode=record_mode,
        match_on=["method", "scheme", "host", "port", "path", "query", "body"],
        filter_headers=[("authorization", "REDACTED"), ("idempotency-key", None),
                        ("x-stripe-client-user-agent", None), ("user-agent", None),
                        ("x-stripe-client-telemetry", None)],
        before_record_request=rewrite_host,
        before_record_response=scrub_response,
        decode_compressed_response=True,
    )


def recording_parameters() -> dict[str, Any]:
    """The customer and clock of the recording (a sidecar, since vcrpy keeps no date)."""
    return json.loads(SIDECAR.read_text())  # type: ignore[no-any-return]


@pytest.fixture
def record_mode(request: pytest.FixtureRequest) -> str:
    mode = str(request.config.getoption("--record-mode", default="none") or "none")
    return mode if RECORDING else "none"


@pytest.fixture
def stripe_provider(record_mode: str) -> Iterator[tuple[StripeProvider, dict[str, Any]]]:
    """Playback: the provider aimed at api.stripe.com (vcrpy answers, no socket opens).
    Recording: at a real sandbox when STRIPE_API_KEY is set, else at the fake on loopback."""
    runtime = bc.Runtime(retry=bc.RetryPolicy(attempts=1))
    if record_mode == "none":
        params = recording_parameters()
        clock = datetime.fromtimestamp(params["clock"], UTC)
        with StripeProvider("sk_test_cassette_playback", runtime=runtime,
                            clock=lambda: clock) as provider:
            yield provider, params
        return
    real_key = os.environ.get("STRIPE_API_KEY")
    if real_key:
        params = {"source": "Stripe sandbox", "customer": os.environ["STRIPE_TEST_CUSTOMER"],
                  "clock": int(datetime.now(UTC).timestamp()), "api_version": stripe.api_version}
        with StripeProvider(real_key, runtime=runtime) as provider:
            yield provider, params
        SIDECAR.write_text(json.dumps(params, indent=2) + "\n")
        return
    fake = StripeFake(clock=lambda: FAKE_CLOCK, seed=2026)
    params = {"source": "billing_credits_stripe.testing.StripeFake on loopback",
              "customer": "cus_cassette", "clock": FAKE_CLOCK}
    with fake.serve() as server, StripeProvider(
            "sk_test_cassette_recording", base_url=server.url, runtime=runtime,
            clock=lambda: datetime.fromtimestamp(FAKE_CLOCK, UTC)) as provider:
        yield provider, params
    SIDECAR.write_text(json.dumps(params, indent=2) + "\n")


@contextmanager
def cassette(name: str, record_mode: str) -> Iterator[Any]:
    """``record_mode`` as pytest-recording names them; ``rewrite`` records afresh."""
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
        "customer_id": customer,
        "amount": bc.Money(amount=Decimal("15.00") + n, currency="USD"),
        "name": f"Cassette grant {n}",
        "reason": "recorded example",
        "category": bc.Category.PROMOTIONAL,
        "effective_at": START,
        "expires_at": START + timedelta(days=365),
        "priority": Decimal(25),
        "scope": bc.Scope(metered_prices_only=True),
        "metadata": {"case": f"c{n}"},
        "idempotency_key": f"cassette-{customer}-{n}",
    }
    data.update(changes)
    return bc.CreditGrant.model_validate(data)


def test_lifecycle(stripe_provider: tuple[StripeProvider, dict[str, Any]],
                   record_mode: str) -> None:
    provider, params = stripe_provider
    customer = params["customer"]
    with cassette("lifecycle", record_mode):
        created = [provider.create_grant(grant(customer, n)) for n in range(3)]
        for n, stored in enumerate(created):
            assert stored.as_new() == grant(customer, n)
        listed = list(provider.list_grants(customer, page_size=2))
        assert {g.id for g in created} <= {g.id for g in listed}
        one = created[0].id or ""
        assert provider.get_grant(one) == created[0]
        assert provider.grant_balance(one) == bc.Money(amount=Decimal("15.00"), currency="USD")
        assert provider.expire_grant(one).status is bc.GrantStatus.EXPIRED
        assert provider.void_grant(created[1].id or "").status is bc.GrantStatus.VOIDED


def test_errors(stripe_provider: tuple[StripeProvider, dict[str, Any]], record_mode: str) -> None:
    provider, params = stripe_provider
    customer = params["customer"]
    with cassette("errors", record_mode):
        with pytest.raises(bc.NotFoundError) as missing:
            provider.get_grant("credgr_test_doesnotexist")
        assert missing.value.code == "resource_missing"
        assert missing.value.request_id
        first = provider.create_grant(grant(customer, 9, idempotency_key="cassette-conflict"))
        assert first.replayed is False
        # The lookup before a keyed create (C1) finds the grant and refuses other parameters.
        with pytest.raises(bc.ConflictError) as found:
            provider.create_grant(grant(customer, 10, idempotency_key="cassette-conflict"))
        assert found.value.code == "idempotency_error"
        # Without it, Stripe's own idempotency layer: 400 idempotency_error, and a replay.
        provider.find_existing_before_create = False
        try:
            with pytest.raises(bc.ConflictError) as conflict:
                provider.create_grant(grant(customer, 10, idempotency_key="cassette-conflict"))
            replay = provider.create_grant(grant(customer, 9, idempotency_key="cassette-conflict"))
        finally:
            provider.find_existing_before_create = True
        assert conflict.value.code == "idempotency_error"
        assert not conflict.value.retryable
        assert conflict.value.status == 400
        assert (replay.id, replay.replayed) == (first.id, True), "Idempotent-Replayed: true"


def test_zero_decimal_and_all_usage(stripe_provider: tuple[StripeProvider, dict[str, Any]],
                                    record_mode: str) -> None:
    provider, params = stripe_provider
    with cassette("zero_decimal", record_mode):
        yen = bc.CreditGrant(customer_id=params["customer"], effective_at=START,
                             amount=bc.Money(amount=Decimal(1200), currency="JPY"),
                             idempotency_key="cassette-jpy")
        stored = provider.create_grant(yen)
        assert stored.as_new() == yen
        assert stored.raw is not None
        assert stored.raw["amount"]["monetary"] == {
            "currency": "jpy", "value": 1200}
        assert stored.scope.is_all_usage
        assert "scope" in {a.field for a in stored.adjustments}


# -- what the cassettes hold -----------------------------------------------------------------


def interactions() -> list[tuple[str, dict[str, Any]]]:
    return [
        (path.name, item)
        for path in sorted(CASSETTES.glob("*.yaml"))
        for item in yaml.safe_load(path.read_text())["interactions"]
    ]


def test_cassettes_exist_and_hold_no_credentials() -> None:
    files = sorted(p.name for p in CASSETTES.glob("*.yaml"))
    assert files == ["errors.yaml", "lifecycle.yaml", "zero_decimal.yaml"]
    for path in CASSETTES.glob("*.yaml"):
        text = path.read_text()
        for marker in SECRET_MARKERS:
            assert marker not in text, f"{marker!r} in {path.name}"
        for header in ("idempotency-key", "x-stripe-client-user-agent", "user-agent"):
            assert f"{header}:" not in text.lower().replace("- ", ""), (header, path.name)
        assert "127.0.0.1" not in text


def test_every_cassette_response_parses_with_the_sdk_objects() -> None:
    kinds = set()
    for name, item in interactions():
        body = json.loads(item["response"]["body"]["string"])
        status = item["response"]["status"]["code"]
        if status >= 400:
            assert error_problems(body) == [], name
            error = stripe.ErrorObject.construct_from(body["error"], "sk_test_x")
            assert error.type, name
            assert error.message, name
            kinds.add("error")
            continue
        # Field names and types as the SDK declares them (the SDK's parse checks only the
        # ``object`` tag).
        assert shape_problems(body) == [], (name, shape_problems(body))
        obj = stripe.convert_to_stripe_object(body)
        assert isinstance(obj, (stripe.billing.CreditGrant, stripe.ListObject,
                                stripe.billing.CreditBalanceSummary)), (name, type(obj))
        if isinstance(obj, stripe.ListObject):
            assert all(isinstance(g, stripe.billing.CreditGrant) for g in obj.data)
        kinds.add(type(obj).__name__)
    assert kinds == {"CreditGrant", "ListObject", "CreditBalanceSummary", "error"}


def test_every_cassette_request_uses_declared_params() -> None:
    for name, item in interactions():
        request = item["request"]
        parts = urlsplit(request["uri"])
        assert parts.netloc == "api.stripe.com", name
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        if request["body"]:
            pairs += parse_qsl(request["body"], keep_blank_values=True)
        assert undeclared_params(request["method"], parts.path, pairs) == [], (name, pairs)
        headers = {k.lower(): v for k, v in request["headers"].items()}
        assert headers["authorization"] == ["REDACTED"]
        assert headers["stripe-version"] == ["2026-10-28.endive"]


def test_playback_is_strict(stripe_provider: tuple[StripeProvider, dict[str, Any]],
                            record_mode: str) -> None:
    """A request not in the cassette fails (no network fallback); so does a changed body;
    and leaving interactions unplayed fails the check ``cassette`` makes."""
    if record_mode != "none":
        pytest.skip("playback only")
    provider, params = stripe_provider
    with pytest.raises(AssertionError, match="unused interactions"), \
            cassette("zero_decimal", record_mode):
        pass
    changed = bc.CreditGrant(customer_id=params["customer"], effective_at=START,
                             amount=bc.Money(amount=Decimal(1201), currency="JPY"),
                             idempotency_key="cassette-jpy")
    with make_vcr("none").use_cassette("zero_decimal.yaml", allow_playback_repeats=False), \
            pytest.raises(bc.UnavailableError, match="CannotOverwriteExistingCassette"):
        provider.create_grant(changed)
