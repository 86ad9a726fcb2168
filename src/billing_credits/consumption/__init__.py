"""The consumption engine: in what order usage draws on credit grants, and what follows.

Owns: the consumption order and the allocation engine (``_engine``), the simulator over a
usage stream (``_simulate``) and its results with their HTML report (``_report``).

May import: the bottom layer (``_base``, ``_money``, ``_model``, ``_priority``, ``_errors``,
``_ledger``). Never the provider contract, ``migrate``, ``cli`` or ``plugins``.
"""
