"""The example plugin in examples/billing-credits-acme passes the conformance suite, and the
conformance suite uses only public names (issue 10)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import billing_credits as bc
from billing_credits.testing import ProviderConformance, serve

acme = pytest.importorskip("billing_credits_acme", reason="pip install -e examples/billing-credits-acme")

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with serve(acme.AcmeFake()) as running:
        yield running.url


class TestAcmeConformance(ProviderConformance):
    @pytest.fixture
    def provider(self, server: str) -> Iterator[bc.Provider]:
        with bc.get_provider("acme", api_key="acme_test_key", base_url=server) as provider:
            yield provider


def test_the_example_is_an_installed_plugin() -> None:
    assert "acme" in {info.name for info in bc.available_providers()}
    from billing_credits.plugins._registry import sandboxes

    assert "acme" in sandboxes()


def test_wrong_key_is_an_authentication_error(server: str) -> None:
    with bc.get_provider("acme", api_key="wrong", base_url=server) as provider, \
            pytest.raises(bc.AuthenticationError) as raised:
        provider.get_grant("acr_x")
    assert "wrong" not in str(raised.value)
    assert raised.value.request_id


def test_conformance_suite_uses_only_public_names() -> None:
    source = (ROOT / "src/billing_credits/testing/_conformance.py").read_text()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("billing"):
            assert not any(part.startswith("_") for part in node.module.split(".")), node.module
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and node.value.id == "bc":
            assert not node.attr.startswith("_"), node.attr
            assert node.attr in bc.__all__, node.attr
