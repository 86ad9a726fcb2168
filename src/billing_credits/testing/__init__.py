"""Testing helpers for users and provider authors (needs ``billing-credits[testing]``).

- ``ProviderConformance``: the conformance suite every provider runs (subclass it in a test
  module and give it a ``provider`` fixture).
- ``strategies``: hypothesis strategies for neutral grants, optionally limited to what a
  provider's ``Capabilities`` can represent.
- ``FakeApp``, ``FakeTransport``, ``serve``, ``Faults``: the kit vendor fakes are built on.
"""

from __future__ import annotations

from ._fakes import FakeApp, FakeTransport, Fault, Faults, FaultStats, LoopbackServer, serve

__all__ = [
    "FakeApp",
    "FakeTransport",
    "Fault",
    "FaultStats",
    "Faults",
    "LoopbackServer",
    "serve",
]
