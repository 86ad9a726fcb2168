"""The migration tool: moving credit grants from one provider to another.

- ``plan`` reads the source and decides, per grant (and per segment when the target holds
  fewer segments), to migrate it, with the exact neutral grant to create, or to skip it with
  a reason. Every change on the way (amount, priority, scope, customer) is listed as a
  ``Change`` with its reason. Nothing is written anywhere but the plan.
- ``apply`` creates the planned grants. Each carries an idempotency key: the application's own
  key when one source grant becomes one target grant (so a later create with it finds the
  migrated grant), otherwise one derived from (source provider, source grant id, segment).
  Before creating, apply lists each target customer's grants once and skips every planned key
  the target already holds: the target's own state decides, never the journal (a cache beside
  the plan) nor the vendor's idempotency memory, which may have forgotten the key. Creates run
  concurrently, at the target's rate limit, through ``target.record_only()`` (a migration never
  invoices). Source grants are retired (voided or expired) only when asked, and only after all
  of their target grants are confirmed; a source already ended counts as retired.
- ``verify`` re-reads the target and reconciles it with the plan, per customer and unit.

Owns: plan records and the plan file (``_plan``), the planner (``_planner``), what is left of a
grant's windows at a moment (``_windows``), the burn-order comparison of a plan's two sides
(``_compare``), the apply journal (``_journal``), the on-disk index of a plan's keys, customers
and origins that apply and verify look up (``_index``), apply with reconcile and retire (``_apply``),
verify (``_verify``) and JSON-lines export/import (``_transfer``).

May import: the bottom layer (``_base``, ``_money``, ``_model``, ``_priority``, ``_errors``,
``_ledger``, ``_lines``, ``_redact``, ``_secrets``, ``_provider``, ``_readable``) and
``consumption``. Never ``cli`` or
``plugins``.
"""
