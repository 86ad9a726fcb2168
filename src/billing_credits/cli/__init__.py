"""The ``billing-credits`` command line (entry point ``billing_credits.cli:main``).

Owns: the root command group, its error handling, the shared options and output helpers
(``_common``), tables that fit the terminal (``_tables``), and one module per command group:
``_providers`` (providers, setup), ``_grants`` (grants create/list/get/void/expire/update),
``_transfer`` (export, import), ``_sandbox``,
``_ledger`` (balance, ledger, consume), ``_simulate``, ``_migrate`` (migrate
plan/apply/verify) and ``_db`` (db upgrade: the local ledger's schema).

May import: everything below it (the bottom layer, ``consumption``, ``migrate``, ``plugins``).
Nothing imports ``cli`` but ``__main__``.
"""

# Importing each command module registers its commands on the root group.
from . import _db, _grants, _ledger, _migrate, _providers, _sandbox, _simulate, _transfer
from ._common import cli, main

__all__ = ["cli", "main"]

del _db, _grants, _ledger, _migrate, _providers, _sandbox, _simulate, _transfer
