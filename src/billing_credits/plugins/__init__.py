"""Plugins: the hooks a provider distribution implements, and finding what is installed.

Owns: the hook specifications (``_hookspecs``), the register objects passed to the hooks
(``_registers`` for providers, ``_sandbox`` for sandboxes) and entry-point discovery with
``get_provider`` / ``available_providers`` (``_registry``).

May import: the bottom layer (``_errors``, ``_capabilities``, ``_provider``). Never
``consumption``, ``migrate`` or ``cli``.
"""
