"""Shared fixtures for the core test suite."""

from __future__ import annotations

from pathlib import Path

import hypothesis
import pytest

# Property tests measure behaviour, not speed: on a loaded CI machine hypothesis's default
# 200 ms deadline per example would fail tests that are correct.
hypothesis.settings.register_profile("billing-credits", deadline=None)
hypothesis.settings.load_profile("billing-credits")


@pytest.fixture(autouse=True)
def _isolated_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own ``local`` database: nothing touches the user's real one."""
    path = tmp_path / "credits.db"
    monkeypatch.setenv("BILLING_CREDITS_DB", str(path))
    return path


@pytest.fixture(autouse=True)
def _offline(loopback_only: None) -> None:
    """No core test reaches past loopback (the guard ships in billing_credits.testing)."""
