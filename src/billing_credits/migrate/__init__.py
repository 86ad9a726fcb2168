"""The migration tool: moving credit grants from one provider to another.

Owns: plan records and the plan file (``_plan``), the planner (``_planner``), what is left of a
grant's windows at a moment (``_windows``), the burn-order comparison of a plan's two sides
(``_compare``), the apply journal (``_journal``), apply with reconcile and retire (``_apply``),
verify (``_verify``) and JSON-lines export/import (``_transfer``).

May import: the bottom layer (``_base``, ``_money``, ``_model``, ``_priority``, ``_errors``,
``_ledger``, ``_redact``, ``_secrets``, ``_provider``) and ``consumption``. Never ``cli`` or
``plugins``.
"""
