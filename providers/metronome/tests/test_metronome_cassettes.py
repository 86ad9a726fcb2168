"""Replay recorded Metronome traffic (vcrpy cassettes in ``cassettes/metronome/``).

In CI the record mode is ``none``: every request must match a recorded one on method, scheme,
host, port, path, query *and body* (the list endpoints are POSTs with their filters in the
body), and every recorded interaction must be played. Re-recording is described in
``cassettes/metronome/README.md``:

- ``METRONOME_RECORD=1``: record against ``MetronomeFake`` served on loopback, with the host
  rewritten to ``https://api.metronome.com`` in the cassette;
- plus ``METRONOME_BEARER_TOKEN`` (and ``METRONOME_TEST_CUSTOMER_ID``,
  ``METRONOME_TEST_PRODUCT_ID``, optionally ``METRONOME_BASE_URL``): record against a real
  Metronome sandbox instead.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import vcr
import yaml
from billing_credits_metronome import MetronomeCreditsProvider, MetronomePlansProvider
from billing_credits_metronome._transport import loads
from metronome_helpers import TOKEN, make_fake, runtime
from metronome_sdk_checks import check_exchange
from vcr.errors import CannotOverwriteExistingCassetteException
from vcr.request import Request as VcrRequest

import billing_credits as bc
from billing_credits.testing import serve

ROOT = Path(__file__).resolve().parents[3] / "cassettes" / "metronome"
SCENARIO = ROOT / "scenario.json"
API = "https://api.metronome.com"
RECORD = os.environ.get("METRONOME_RECORD") == "1"
REAL = RECORD and bool(os.environ.get("METRONOME_BEARER_TOKEN"))
NOISE_HEADERS = ("user-agent", "accept-encoding", "connection", "content-length", "host")


def _scenario() -> dict[str, Any]:
    """Fixed inputs, so request bodies are the same on every replay."""
    if RECORD:
        scenario = {
            "customer_id": os.environ.get("METRONOME_TEST_CUSTOMER_ID",
                                          "13117714-3f05-48e5-a6e9-a66093f13b4d"),
            "product_id": os.environ.get("METRONOME_TEST_PRODUCT_ID",
                                         "f14d6729-6a44-4b13-9908-9387f1918790"),
            "now": datetime.now(UTC).replace(minute=17, second=0, microsecond=0).isoformat(),
            "run": uuid.uuid4().hex[:8],
            "recorded_against": "metronome sandbox" if REAL else "MetronomeFake on loopback",
            "recorded_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        SCENARIO.parent.mkdir(parents=True, exist_ok=True)
        SCENARIO.write_text(json.dumps(scenario, indent=2) + "\n")
        return scenario
    return dict(json.loads(SCENARIO.read_text()))


def _scrub_request(request: VcrRequest) -> VcrRequest:
    """Drop SDK/transport noise (``x-stainless-*``, user agent) and put the loopback fake's
    address back to Metronome's."""
    for name in list(request.headers):
        if name.lower().startswith("x-stainless") or name.lower() in NOISE_HEADERS:
            del request.headers[name]
    if request.uri.startswith("http://127.0.0.1"):
        rest = request.uri.split("/", 3)[3]
        request.uri = f"{API}/{rest}"
    return request


def _scrub_response(response: dict[str, Any]) -> dict[str, Any]:
    headers = response.get("headers", {})
    for name in list(headers):
        if name.lower() in ("date", "server", "set-cookie", "connection", "keep-alive"):
            del headers[name]
    return response


def cassette_vcr() -> vcr.VCR:
    return vcr.VCR(
        cassette_library_dir=str(ROOT),
        record_mode="all" if RECORD else "none",
        match_on=["method", "scheme", "host", "port", "path", "query", "body"],
        filter_headers=[("authorization", "REDACTED")],
        before_record_request=_scrub_request,
        before_record_response=_scrub_response,
        decode_compressed_response=True,
    )


def _fresh(name: str) -> str:
    """The cassette file name; when recording, the old file is removed first (vcrpy's record
    mode "all" would otherwise append the new interactions to the old ones)."""
    if RECORD:
        (ROOT / name).unlink(missing_ok=True)
    return name


@contextmanager
def base_url() -> Iterator[str]:
    """Where to send: the real API when recording against it, the loopback fake when recording
    against the fake, and Metronome's address (answered from the cassette) on replay."""
    if REAL:
        yield os.environ.get("METRONOME_BASE_URL", API)
    elif RECORD:
        fake = make_fake(clock=lambda: datetime.fromisoformat(_scenario_now))
        with serve(fake) as server:
            yield server.url
    else:
        yield API


_scenario_now = ""


def _provider(name: str, url: str, scenario: dict[str, Any]) -> bc.Provider:
    now = datetime.fromisoformat(scenario["now"])
    token = os.environ["METRONOME_BEARER_TOKEN"] if REAL else TOKEN
    options: dict[str, Any] = {"bearer_token": token, "base_url": url,
                               "runtime": runtime(attempts=1), "clock": lambda: now}
    if name == "metronome":
        return MetronomeCreditsProvider(product_id=scenario["product_id"], **options)
    return MetronomePlansProvider(**options)


def _grants(scenario: dict[str, Any], name: str, mode: str) -> list[bc.CreditGrant]:
    now = datetime.fromisoformat(scenario["now"])
    start = now.replace(minute=0) - timedelta(hours=1)
    return [bc.CreditGrant(
        customer_id=scenario["customer_id"],
        amount=bc.Money(amount=Decimal("10.00") + i, currency="USD"),
        name=f"cassette {i}", reason="recorded scenario", effective_at=start,
        expires_at=start + timedelta(days=30), priority=Decimal("0.5") + i,
        category=bc.Category.PROMOTIONAL, category_label="trial",
        idempotency_key=f"cassette-{scenario['run']}-{name}-{mode}-{i}",
    ) for i in range(3)]


def _play(provider: bc.Provider, grants: list[bc.CreditGrant]) -> None:
    created = [provider.create_grant(g) for g in grants]
    again = provider.create_grant(grants[0])
    assert again.id == created[0].id
    listed = [g for g in provider.list_grants(grants[0].customer_id, page_size=1)
              if g.idempotency_key in {x.idempotency_key for x in grants}]
    assert [g.id for g in listed] == [g.id for g in created]
    assert created[0].id
    assert created[1].id
    assert provider.get_grant(created[0].id).amount == grants[0].amount
    if provider.capabilities.supports("void"):
        assert provider.void_grant(created[1].id).status is bc.GrantStatus.VOIDED
    assert provider.expire_grant(created[0].id).status is bc.GrantStatus.EXPIRED


async def _aplay(provider: bc.Provider, grants: list[bc.CreditGrant]) -> None:
    created = [await provider.acreate_grant(g) for g in grants]
    assert (await provider.acreate_grant(grants[0])).id == created[0].id
    listed = [g async for g in provider.alist_grants(grants[0].customer_id, page_size=1)
              if g.idempotency_key in {x.idempotency_key for x in grants}]
    assert [g.id for g in listed] == [g.id for g in created]
    assert created[0].id
    assert created[1].id
    assert (await provider.aget_grant(created[0].id)).amount == grants[0].amount
    if provider.capabilities.supports("void"):
        assert (await provider.avoid_grant(created[1].id)).status is bc.GrantStatus.VOIDED
    assert (await provider.aexpire_grant(created[0].id)).status is bc.GrantStatus.EXPIRED
    await provider.aclose()


@pytest.fixture(scope="module")
def scenario() -> dict[str, Any]:
    global _scenario_now
    data = _scenario()
    _scenario_now = data["now"]
    return data


@pytest.mark.parametrize("name", ["metronome", "metronome-plans"])
def test_replay_sync(name: str, scenario: dict[str, Any]) -> None:
    with base_url() as url, cassette_vcr().use_cassette(_fresh(f"{name}-sync.yaml")) as cassette:
        provider = _provider(name, url, scenario)
        _play(provider, _grants(scenario, name, "sync"))
        provider.close()
    assert RECORD or cassette.all_played, "unused interactions in the cassette"


@pytest.mark.parametrize("name", ["metronome", "metronome-plans"])
async def test_replay_async(name: str, scenario: dict[str, Any]) -> None:
    with base_url() as url, cassette_vcr().use_cassette(_fresh(f"{name}-async.yaml")) as cassette:
        await _aplay(_provider(name, url, scenario), _grants(scenario, name, "async"))
    assert RECORD or cassette.all_played, "unused interactions in the cassette"


def test_an_unrecorded_request_fails() -> None:
    if RECORD:
        pytest.skip("recording")
    provider = MetronomePlansProvider(bearer_token=TOKEN, runtime=runtime(attempts=1))
    with cassette_vcr().use_cassette("metronome-plans-sync.yaml"), pytest.raises(
            CannotOverwriteExistingCassetteException):
        provider.get_grant(str(uuid.uuid4()))


def _cassettes() -> list[Path]:
    return sorted(ROOT.glob("*.yaml"))


def test_cassettes_exist() -> None:
    assert {p.name for p in _cassettes()} >= {
        "metronome-sync.yaml", "metronome-async.yaml", "metronome-plans-sync.yaml",
        "metronome-plans-async.yaml"}


@pytest.mark.parametrize("path", _cassettes(), ids=lambda p: p.name)
def test_cassette_bodies_match_the_sdk_and_hold_no_secrets(path: Path) -> None:
    text = path.read_text()
    assert TOKEN not in text
    assert "Bearer" not in text
    assert "x-stainless" not in text.lower()
    assert "127.0.0.1" not in text
    data = yaml.safe_load(text)
    assert data["interactions"]
    for interaction in data["interactions"]:
        recorded = interaction["request"]
        assert recorded["headers"]["authorization"] == ["REDACTED"]
        assert recorded["uri"].startswith(API)
        request = httpx.Request(recorded["method"], recorded["uri"],
                                content=recorded["body"].encode()
                                if isinstance(recorded["body"], str) else recorded["body"])
        reply = interaction["response"]
        body = reply["content"] if "content" in reply else reply["body"]["string"]
        response = httpx.Response(reply["status"]["code"], content=body.encode()
                                  if isinstance(body, str) else body)
        check_exchange(request, response)
        loads(response.content)
