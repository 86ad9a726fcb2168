"""Testing helpers for the Metronome providers: ``MetronomeFake``, a stateful fake of both APIs.

Reach it in process with ``billing_credits.testing.FakeTransport(fake, faults)`` or over loopback
HTTP with ``billing_credits.testing.serve(fake, faults)``.
"""

from __future__ import annotations

from ._fake import (
    CREATE_CREDIT_FIELDS,
    CREATE_GRANT_FIELDS,
    EDIT_GRANT_FIELDS,
    LIST_CREDITS_FIELDS,
    LIST_GRANTS_FIELDS,
    UPDATE_END_DATE_FIELDS,
    VOID_GRANT_FIELDS,
    MetronomeFake,
)

__all__ = [
    "CREATE_CREDIT_FIELDS",
    "CREATE_GRANT_FIELDS",
    "EDIT_GRANT_FIELDS",
    "LIST_CREDITS_FIELDS",
    "LIST_GRANTS_FIELDS",
    "UPDATE_END_DATE_FIELDS",
    "VOID_GRANT_FIELDS",
    "MetronomeFake",
]
