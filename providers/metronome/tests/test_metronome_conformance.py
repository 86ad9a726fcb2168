"""The core conformance suite, against the fake, for both providers."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from metronome_helpers import CUSTOM_UNIT, PRODUCT, TOKEN, make_fake, runtime

import billing_credits as bc
from billing_credits.testing import FakeTransport, ProviderConformance


def _without_segment_ids(fields: dict[str, Any]) -> dict[str, Any]:
    if fields.get("schedule"):
        fields["schedule"] = [{**s, "id": None} for s in fields["schedule"]]
    return fields


class _MetronomeConformance(ProviderConformance):
    name = ""

    @pytest.fixture
    def provider(self) -> Iterator[bc.Provider]:
        transport = FakeTransport(make_fake())
        settings = {"product_id": PRODUCT} if self.name == "metronome" else {}
        with bc.get_provider(
            self.name, bearer_token=TOKEN, runtime=runtime(),
            http_client=httpx.Client(transport=transport),
            async_http_client=httpx.AsyncClient(transport=transport), **settings,
        ) as provider:
            yield provider

    def ids(self, kind: str, count: int) -> tuple[str, ...]:
        if kind == "unit":
            return (CUSTOM_UNIT,) * count
        return super().ids(kind, count)

    def assert_same_request(self, stored: bc.CreditGrant, requested: bc.CreditGrant) -> None:
        """As the suite's, except segment ids: Metronome assigns them (``Segment.id`` is the
        vendor's id when read back), so a read-back schedule carries ids the request had not."""
        expected = _without_segment_ids(requested.request_fields())
        actual = _without_segment_ids(stored.request_fields())
        if requested.effective_at is None:
            expected.pop("effective_at")
            actual.pop("effective_at")
        assert actual == expected


class TestPlansConformance(_MetronomeConformance):
    name = "metronome-plans"


class TestCreditsConformance(_MetronomeConformance):
    name = "metronome"

    def missing_id(self) -> str:
        return f"{uuid.uuid4()}:{uuid.uuid4()}"
