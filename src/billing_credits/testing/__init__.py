"""Testing helpers for users and provider authors (needs ``billing-credits[testing]``).

- ``ProviderConformance``: the conformance suite every provider runs (subclass it in a test
  module and give it a ``provider`` fixture).
- ``strategies``: hypothesis strategies for neutral grants, optionally limited to what a
  provider's ``Capabilities`` can represent: ``grants(capabilities, read_back=…,
  time_step=…, now=…)`` and the blocks ``money``, ``scopes``, ``priorities`` and
  ``aware_datetimes``. Import it as ``billing_credits.testing.strategies`` (it imports
  hypothesis; this package does not).
- ``FakeApp``, ``FakeTransport``, ``serve``, ``Faults``: the kit vendor fakes are built on;
  ``Drip``, a loopback server that answers slowly or endlessly (bounded-request tests).

Owns: the conformance suite (``_conformance``), the fake kit (``_fakes``, ``_drip``), the
hypothesis strategies (``strategies``) and the pytest plugin (``_pytest_plugin``).

May import: the public API (``billing_credits``) only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._drip import Drip
from ._fakes import FakeApp, FakeTransport, Fault, Faults, FaultStats, LoopbackServer, serve

if TYPE_CHECKING:
    from ._conformance import ProviderConformance

__all__ = [
    "Drip",
    "FakeApp",
    "FakeTransport",
    "Fault",
    "FaultStats",
    "Faults",
    "LoopbackServer",
    "ProviderConformance",
    "serve",
]


def __getattr__(name: str) -> Any:
    """Import the conformance suite (and pytest) only when it is asked for."""
    if name == "ProviderConformance":
        from ._conformance import ProviderConformance

        return ProviderConformance
    raise AttributeError(name)
