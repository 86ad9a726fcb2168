"""pytest plugin shipped with billing-credits (entry point ``pytest11``): fixtures for users.

Kept light: nothing is imported until a fixture is used.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    import billing_credits as bc


@pytest.fixture
def local_credits(tmp_path: Path) -> Iterator[bc.Provider]:
    """A ``local`` provider on a fresh SQLite file, closed after the test."""
    import billing_credits as bc

    with bc.get_provider("local", path=str(tmp_path / "credits.db")) as provider:
        yield provider
