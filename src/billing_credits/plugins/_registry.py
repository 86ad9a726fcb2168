"""Plugin discovery: entry points of the ``billing_credits`` group, loaded once, lazily.

Environment:

- ``BILLING_CREDITS_LOAD_PLUGINS``: comma-separated entry-point names to load (others skipped).
  Empty string: load none.
- ``BILLING_CREDITS_DISABLED_PLUGINS``: comma-separated entry-point names never to load.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any

import pluggy

import billing_credits.plugins._hookspecs as hookspecs
from billing_credits._capabilities import Capabilities
from billing_credits._errors import ConfigurationError, UnknownProviderError
from billing_credits._provider import MAX_LISTING_PAGES, Provider, Setting

from ._registers import ProviderRegister
from ._sandbox import SandboxRegister, SandboxStart

__all__ = [
    "ProviderInfo", "ProviderRegister", "available_providers", "get_provider", "plugin_manager",
    "sandboxes",
]

ENTRY_POINT_GROUP = "billing_credits"

pm = pluggy.PluginManager("billing_credits")
pm.add_hookspecs(hookspecs)

_lock = threading.Lock()
_loaded = False


def _names(variable: str) -> list[str] | None:
    value = os.environ.get(variable)
    if value is None:
        return None
    return [name.strip() for name in value.split(",") if name.strip()]


def load_plugins() -> None:
    """Load the installed plugins once (thread-safe), then check every hook implementation."""
    global _loaded
    with _lock:
        if _loaded:
            return
        _loaded = True
        for name in _names("BILLING_CREDITS_DISABLED_PLUGINS") or []:
            pm.set_blocked(name)
        allowed = _names("BILLING_CREDITS_LOAD_PLUGINS")
        if allowed is None:
            pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
        else:
            from importlib.metadata import entry_points

            for ep in entry_points(group=ENTRY_POINT_GROUP):
                if ep.name in allowed and not pm.is_blocked(ep.name) and not pm.get_plugin(ep.name):
                    pm.register(ep.load(), name=ep.name)
        pm.check_pending()


def plugin_manager() -> pluggy.PluginManager:
    """The loaded plugin manager (register test plugins on it with ``pm.register``)."""
    load_plugins()
    return pm


def providers() -> dict[str, type[Provider]]:
    """Every installed provider class, by name."""
    register = ProviderRegister()
    plugin_manager().hook.register_providers(register=register)
    return dict(sorted(register.providers.items()))


@dataclass(frozen=True)
class ProviderInfo:
    """An installed provider: its name, where it comes from, what it can hold and its settings."""

    name: str
    module: str
    capabilities: Capabilities
    settings: tuple[Setting, ...]
    description: str


LISTING_CEILING = Setting(
    "max_listing_pages", f"most pages one listing (grants, balances, ledger) may take before it "
    f"stops with an error, against a vendor paging for ever (default {MAX_LISTING_PAGES})",
    env="BILLING_CREDITS_MAX_LISTING_PAGES")
"""A setting every provider takes (``get_provider`` applies it: ``Provider.max_listing_pages``)."""


def _settings_of(cls: type[Provider]) -> tuple[Setting, ...]:
    own = {s.name for s in cls.settings}
    return cls.settings if LISTING_CEILING.name in own else (*cls.settings, LISTING_CEILING)


def _ceiling(value: Any) -> int:
    text = value if value is not None else os.environ.get(LISTING_CEILING.env or "")
    if text is None or text == "":
        return MAX_LISTING_PAGES
    try:
        number = int(text) if not isinstance(text, bool) else -1
    except (TypeError, ValueError):
        number = -1
    if number < 1:
        raise ConfigurationError(
            f"setting max_listing_pages must be a whole number of at least 1, not {text!r:.40}")
    return number


def available_providers() -> list[ProviderInfo]:
    """The installed providers, sorted by name."""
    return [
        ProviderInfo(
            name=name,
            module=cls.__module__,
            capabilities=cls.capabilities,
            settings=_settings_of(cls),
            description=(cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else "",
        )
        for name, cls in providers().items()
    ]


def get_provider(name: str, /, **settings: Any) -> Provider:
    """A ready provider. ``settings`` are the provider's own (see ``available_providers()``);
    each provider reads a setting it is not given from that setting's environment variable.

    Raises ``UnknownProviderError`` (listing the installed ones) for an unknown name and
    ``ConfigurationError`` for a setting the provider does not have.
    """
    installed = providers()
    cls = installed.get(name)
    if cls is None:
        raise UnknownProviderError(name, installed)
    own = {s.name for s in cls.settings}
    known = {s.name for s in _settings_of(cls)}
    unknown = sorted(set(settings) - known - {"runtime"})
    if unknown:
        raise ConfigurationError(
            f"provider {name!r} has no setting {', '.join(unknown)}; "
            f"its settings: {', '.join(sorted(known)) or 'none'}"
        )
    if LISTING_CEILING.name in own:
        return cls(**settings)
    ceiling = _ceiling(settings.pop(LISTING_CEILING.name, None))
    provider = cls(**settings)
    provider.max_listing_pages = ceiling
    return provider


def sandboxes() -> dict[str, SandboxStart]:
    """Every installed sandbox's ``start``, by name."""
    register = SandboxRegister()
    plugin_manager().hook.register_sandboxes(register=register)
    return dict(sorted(register.sandboxes.items()))
