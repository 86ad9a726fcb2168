"""The local provider passes the conformance suite every provider runs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import billing_credits as bc
from billing_credits.testing import ProviderConformance


class TestLocalConformance(ProviderConformance):
    @pytest.fixture
    def provider(self, tmp_path: Path) -> Iterator[bc.Provider]:
        with bc.get_provider("local", path=str(tmp_path / "credits.db")) as provider:
            yield provider
