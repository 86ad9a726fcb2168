"""The ``local`` provider: grants in a SQLite file or a PostgreSQL database, registered like
any other plugin.

Read this package first when writing a provider. It uses only the public API, as a
third-party plugin would: ``_provider.py`` holds the flows every provider implements,
``_store.py`` the storage they drive (one schema and one code path for both engines), with
``_sqlite.py`` and ``_postgres.py`` the little that differs.

Owns: the ``local`` provider (``_provider``), its store design (``_store``) on SQLite
(``_sqlite``) and PostgreSQL (``_postgres``).

May import: the public API (``billing_credits``) and, for exact arithmetic, ``_money``.
"""

from __future__ import annotations

import billing_credits

from ._provider import LocalProvider, default_database_path

__all__ = ["LocalProvider", "default_database_path"]


@billing_credits.hookimpl
def register_providers(register: billing_credits.ProviderRegister) -> None:
    register(LocalProvider)
