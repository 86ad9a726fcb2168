"""Orb prepaid credits (credit blocks) for billing-credits.

Registered as provider ``orb`` through the ``billing_credits`` entry-point group::

    import billing_credits as bc

    orb = bc.get_provider("orb", api_key="...")

``billing_credits_orb.testing`` holds ``OrbFake``, a stateful offline fake of Orb's credits
endpoints. Importing this package loads neither the ``orb`` SDK nor httpx.
"""

from __future__ import annotations

from contextlib import AbstractContextManager

import billing_credits

from ._provider import DEFAULT_BASE_URL, OrbProvider, map_error
from ._translate import NO_PRIORITY, ORB_ORDER

__all__ = ["DEFAULT_BASE_URL", "NO_PRIORITY", "ORB_ORDER", "OrbProvider", "map_error"]


@billing_credits.hookimpl
def register_providers(register: billing_credits.ProviderRegister) -> None:
    """Register the ``orb`` provider."""
    register(OrbProvider)


@billing_credits.hookimpl
def register_sandboxes(register: billing_credits.SandboxRegister) -> None:
    """Register the ``orb`` sandbox (``OrbFake`` on loopback), imported when started."""

    def start() -> AbstractContextManager[billing_credits.Sandbox]:
        from .testing._sandbox import start

        return start()

    register("orb", start)
