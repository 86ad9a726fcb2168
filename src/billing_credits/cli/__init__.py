"""The ``billing-credits`` command line (entry point ``billing_credits.cli:main``).

Owns: the root command group and its error handling (``_root``), the shared options and output
helpers (``_common``), and one module per command group: ``_providers`` (providers, setup),
``_grants`` (grants create/list/update), ``_transfer`` (export, import), ``_sandbox``,
``_ledger`` (balance, ledger, consume), ``_simulate`` and ``_migrate`` (migrate plan/apply/verify).

May import: everything below it (the bottom layer, ``consumption``, ``migrate``, ``plugins``).
Nothing imports ``cli`` but ``__main__``.
"""

from ._common import cli, main

__all__ = ["cli", "main"]
