"""The public surface: ``__all__`` is exactly what is defined, and importing is light."""

from __future__ import annotations
import __future__

import inspect
import json
import subprocess
import sys

import billing_credits as bc


def _ruff_order(name: str) -> tuple[int, str]:
    """isort-style order (what ruff's RUF022 enforces): CONSTANTS, Classes, functions."""
    if name.isupper():
        return 0, name
    if name[0].isupper():
        return 1, name
    return 2, name


def test_all_is_exactly_the_public_names() -> None:
    for name in bc.__all__:  # names load lazily, on first use: load them all
        getattr(bc, name)
    defined = {
        name for name, value in vars(bc).items()
        if not name.startswith("_")
        and not inspect.ismodule(value)
        and not isinstance(value, __future__._Feature)
    }
    assert set(bc.__all__) == defined | {"__version__"}
    assert len(bc.__all__) == len(set(bc.__all__))


def test_all_is_sorted() -> None:
    assert bc.__all__ == sorted(bc.__all__, key=_ruff_order)


def test_public_names_come_from_the_package() -> None:
    for name in bc.__all__:
        value = getattr(bc, name)
        module = getattr(value, "__module__", None)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert str(module).startswith("billing_credits"), name
            assert value.__doc__, f"{name} has no docstring"


def test_version() -> None:
    assert isinstance(bc.__version__, str)
    assert bc.__version__[0].isdigit()


LOADED = (
    "import sys, json, {module}; "
    "print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"
)


def loaded_after_import(module: str) -> set[str]:
    done = subprocess.run([sys.executable, "-c", LOADED.format(module=module)],
                          capture_output=True, text=True, check=True, timeout=60)
    return set(json.loads(done.stdout))


def test_importing_billing_credits_imports_no_vendor_sdk_nor_httpx() -> None:
    loaded = loaded_after_import("billing_credits")
    assert "billing_credits" in loaded
    assert not loaded & {"stripe", "metronome", "httpx", "hypothesis", "pytest"}


def test_importing_billing_credits_builds_no_model() -> None:
    """``--help`` stays fast: pydantic (and the models) load only when a name needs them."""
    loaded = loaded_after_import("billing_credits")
    assert not loaded & {"pydantic", "pydantic_core", "rich", "tenacity", "pyrate_limiter"}
    assert not loaded_after_import("billing_credits.cli") & {"pydantic", "rich"}


def test_importing_the_testing_package_does_not_import_hypothesis() -> None:
    loaded = loaded_after_import("billing_credits.testing")
    assert "hypothesis" not in loaded
    assert not loaded & {"stripe", "metronome"}
    assert "hypothesis" in loaded_after_import("billing_credits.testing.strategies")


def test_strategies_public_surface() -> None:
    from billing_credits.testing import strategies

    assert set(strategies.__all__) >= {"grants", "money", "scopes", "priorities",
                                       "aware_datetimes"}
    for name in strategies.__all__:
        assert hasattr(strategies, name)
