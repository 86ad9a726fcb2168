"""The ``local`` provider: grants in a SQLite file, registered like any other plugin.

Read this package first when writing a provider. It uses only the public API, as a
third-party plugin would: ``_provider.py`` holds the flows every provider implements,
``_store.py`` the storage they drive.

Owns: the ``local`` provider (``_provider``) and its SQLite store (``_store``).

May import: the public API (``billing_credits``) and, for exact arithmetic, ``_money``.
"""

from __future__ import annotations

import billing_credits

from ._provider import LocalProvider, default_database_path

__all__ = ["LocalProvider", "default_database_path"]


@billing_credits.hookimpl
def register_providers(register: billing_credits.ProviderRegister) -> None:
    register(LocalProvider)
