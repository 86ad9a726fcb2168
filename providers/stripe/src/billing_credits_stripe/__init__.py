"""Stripe billing credit grants for billing-credits.

Registered as provider ``stripe`` through the ``billing_credits`` entry-point group::

    import billing_credits as bc

    stripe = bc.get_provider("stripe", api_key="sk_test_...")

``billing_credits_stripe.testing`` holds ``StripeFake``, a stateful offline fake of Stripe's
credit-grant endpoints.
"""

from __future__ import annotations

from contextlib import AbstractContextManager

import billing_credits

from ._provider import StripeProvider, default_rate_limit, map_error
from ._translate import STRIPE_API_VERSION

__all__ = ["STRIPE_API_VERSION", "StripeProvider", "default_rate_limit", "map_error"]


@billing_credits.hookimpl
def register_providers(register: billing_credits.ProviderRegister) -> None:
    """Register the ``stripe`` provider."""
    register(StripeProvider)


@billing_credits.hookimpl
def register_sandboxes(register: billing_credits.SandboxRegister) -> None:
    """Register the ``stripe`` sandbox (``StripeFake`` on loopback), imported when started."""

    def start() -> AbstractContextManager[billing_credits.Sandbox]:
        from .testing._sandbox import start

        return start()

    register("stripe", start)
