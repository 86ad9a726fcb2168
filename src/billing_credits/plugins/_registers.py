"""What the ``register_providers`` hook is given: the register collecting provider classes."""

from __future__ import annotations

from billing_credits._capabilities import Capabilities
from billing_credits._errors import ConfigurationError
from billing_credits._provider import Provider

__all__ = ["ProviderRegister"]


class ProviderRegister:
    """The ``register`` argument of ``register_providers``: collects provider classes."""

    def __init__(self) -> None:
        self.providers: dict[str, type[Provider]] = {}

    def __call__(self, provider: type[Provider]) -> None:
        if not (isinstance(provider, type) and issubclass(provider, Provider)):
            raise ConfigurationError(f"{provider!r} is not a billing_credits.Provider subclass")
        name = getattr(provider, "name", None)
        if not name or not isinstance(getattr(provider, "capabilities", None), Capabilities):
            raise ConfigurationError(f"{provider.__name__} needs a name and capabilities")
        existing = self.providers.get(name)
        if existing is not None and existing is not provider:
            raise ConfigurationError(
                f"provider name {name!r} registered twice: {existing.__module__}.{existing.__name__}"
                f" and {provider.__module__}.{provider.__name__}"
            )
        self.providers[name] = provider
