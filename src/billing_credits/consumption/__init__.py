"""The consumption engine: in what order usage draws on credit grants, and what follows.

Owns: the consumption order and the allocation engine (``_engine``), the simulator over a
usage stream (``_simulate``), the spool that groups a listing by customer so the simulator
holds one customer at a time (``_spool``), and its results with their HTML report
(``_report``, written as it goes).

May import: the bottom layer (``_base``, ``_money``, ``_model``, ``_priority``, ``_errors``,
``_ledger``, ``_lines``). Never the provider contract, ``migrate``, ``cli`` or ``plugins``.
"""
