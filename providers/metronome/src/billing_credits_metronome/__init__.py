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

from contextlib import AbstractContextManager

import billing_credits

from ._credits import MetronomeCreditsProvider
from ._plans import MetronomePlansProvider
from ._provider import DEFAULT_RATE_LIMIT
from ._translate import USD_CENTS, CurrencyScale

__all__ = [
    "DEFAULT_RATE_LIMIT",
    "USD_CENTS",
    "CurrencyScale",
    "MetronomeCreditsProvider",
    "MetronomePlansProvider",
    "register_providers",
    "register_sandboxes",
]


@billing_credits.hookimpl
def register_providers(register: billing_credits.ProviderRegister) -> None:
    """Register ``metronome`` (customer credits) and ``metronome-plans`` (v1 credit grants)."""
    register(MetronomeCreditsProvider)
    register(MetronomePlansProvider)


@billing_credits.hookimpl
def register_sandboxes(register: billing_credits.SandboxRegister) -> None:
    """Register the ``metronome`` sandbox (a seeded ``MetronomeFake`` on loopback)."""

    def start() -> AbstractContextManager[billing_credits.Sandbox]:
        from .testing._sandbox import start

        return start()

    register("metronome", start)
