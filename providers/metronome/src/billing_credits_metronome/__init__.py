"""Metronome providers for billing-credits.

- ``metronome``: contract-era customer credits (``/v1/contracts/customerCredits/*``).
- ``metronome-plans``: Plans-era v1 credit grants (``/v1/credits/*``).

Both are registered through the ``billing_credits`` entry-point group::

    import billing_credits as bc
    credits = bc.get_provider("metronome", bearer_token=..., product_id=...)
    grants = bc.get_provider("metronome-plans", bearer_token=...)

``billing_credits_metronome.testing.MetronomeFake`` is a stateful fake of both APIs.
"""

from __future__ import annotations

import billing_credits

from ._provider import (
    DEFAULT_RATE_LIMIT,
    MetronomeCreditsProvider,
    MetronomePlansProvider,
)
from ._translate import USD_CENTS, CurrencyScale

__all__ = [
    "DEFAULT_RATE_LIMIT",
    "USD_CENTS",
    "CurrencyScale",
    "MetronomeCreditsProvider",
    "MetronomePlansProvider",
    "register_providers",
]


@billing_credits.hookimpl
def register_providers(register: billing_credits.ProviderRegister) -> None:
    """Register ``metronome`` (customer credits) and ``metronome-plans`` (v1 credit grants)."""
    register(MetronomeCreditsProvider)
    register(MetronomePlansProvider)
