"""The plugin hooks. A plugin is a module with ``@hookimpl`` functions, named in the
``billing_credits`` entry-point group of its distribution::

    [project.entry-points.billing_credits]
    myvendor = "billing_credits_myvendor"
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from ._registers import ProviderRegister
    from ._sandbox import SandboxRegister

__all__ = ["hookimpl", "hookspec"]

hookspec = pluggy.HookspecMarker("billing_credits")
hookimpl = pluggy.HookimplMarker("billing_credits")


@hookspec
def register_providers(register: ProviderRegister) -> None:
    """Register provider classes: call ``register(MyProvider)`` once for each.

    :param register: call it with a ``billing_credits.Provider`` subclass; the provider is
        known by its ``name`` attribute, which must be unique among installed providers.

    .. versionadded:: 0.1
    """


@hookspec
def register_sandboxes(register: SandboxRegister) -> None:
    """Register sandboxes: call ``register(name, start)`` for each vendor fake you ship.

    :param register: call it with a name (``"stripe"``) and ``start``, a function returning a
        context manager that serves the fake on loopback, seeds a demo account and yields a
        ``billing_credits.Sandbox`` (its URL and the environment variables pointing the
        plugin's providers at it). Import the fake inside ``start``, not at module import.

    .. versionadded:: 0.2
    """
