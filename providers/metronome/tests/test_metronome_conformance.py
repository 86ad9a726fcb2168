"""The core conformance suite, against the fake, for both providers."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
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

    def test_update_changes_each_updatable_field(self, provider: bc.Provider) -> None:
        """As the suite's, but the new end is earlier than the sample's: ``updateEndDate`` "can
        only shorten" a customer credit (the suite's later end is refused, as it should be)."""
        assert provider.capabilities.updatable_fields == {"expires_at"}
        created = provider.create_grant(self.sample_grant(provider))
        assert created.id is not None
        assert created.expires_at == self.start() + timedelta(days=30)
        new_end = self.start() + timedelta(days=20)
        assert provider.update_grant(created.id, expires_at=new_end).expires_at == new_end
        assert provider.get_grant(created.id).expires_at == new_end
        assert provider.get_grant(created.id).amount.amount == created.amount.amount
        with pytest.raises(bc.NotRepresentableError, match="only shorten"):
            provider.update_grant(created.id, expires_at=self.start() + timedelta(days=60))

    def missing_id(self) -> str:
        return f"{uuid.uuid4()}:{uuid.uuid4()}"
