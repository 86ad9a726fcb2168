"""The plugin hooks. A plugin is a module with ``@hookimpl`` functions, named in the
``billing_credits`` entry-point group of its distribution::

    [project.entry-points.billing_credits]
    myvendor = "billing_credits_myvendor"
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from ._plugins import ProviderRegister

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
