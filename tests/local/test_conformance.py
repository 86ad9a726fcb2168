"""The local provider passes the conformance suite every provider runs, on both engines."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import billing_credits as bc
from billing_credits.testing import ProviderConformance


class TestLocalConformance(ProviderConformance):
    @pytest.fixture
    def provider(self, engine: str) -> Iterator[bc.Provider]:
        with bc.get_provider("local", path=engine) as provider:
            yield provider
