"""A 2xx from Stripe as the provider and the ledger flows read it (``Answer``), and header
lookup. Imports nothing of the provider, so the ledger flows can use it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import billing_credits as bc
import billing_credits_stripe._translate as tr

__all__ = ["Answer"]


def _header(headers: Mapping[str, str] | None, name: str) -> str | None:
    if not headers:
        return None
    value = headers.get(name)
    if value is None:
        for key, item in headers.items():
            if key.lower() == name.lower():
                return item
    return value


@dataclass(frozen=True)
class Answer:
    """A 2xx from Stripe: the decoded JSON, its ``Request-Id`` and ``Idempotent-Replayed``."""

    data: Any
    request_id: str | None
    replayed: bool

    @classmethod
    def of(cls, response: Any) -> Answer:
        headers = getattr(response, "headers", None) or {}
        return cls(data=getattr(response, "data", None),
                   request_id=_header(headers, "request-id"),
                   replayed=(_header(headers, "idempotent-replayed") or "").lower() == "true")

    def invalid(self, problem: str) -> bc.InvalidResponseError:
        return bc.InvalidResponseError(
            f"Stripe answered with something unusable: {problem}",
            provider=tr.PROVIDER_NAME, status=200, body=bc.excerpt(self.data),
            request_id=self.request_id)

    def mapping(self, expected_object: str) -> Mapping[str, Any]:
        """The body as a JSON object whose ``object`` is ``expected_object``."""
        data = self.data
        if not isinstance(data, Mapping):
            raise self.invalid(f"expected a {expected_object} object, got {type(data).__name__}")
        if data.get("object") != expected_object:
            raise self.invalid(f"expected object {expected_object!r}, got {data.get('object')!r}")
        return data
