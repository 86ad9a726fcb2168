"""Plugins: discovery, registration, errors, and documentation that matches the hooks."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pluggy
import pytest

import billing_credits as bc
from billing_credits.plugins import _hookspecs

DOCS = Path(__file__).parent.parent / "docs" / "plugin-hooks.md"


class EchoProvider(bc.Provider):
    """A third-party provider that stores nothing."""

    name = "echo-test"
    capabilities = bc.Capabilities(operations=frozenset({"create", "get", "list"}))
    settings = (bc.Setting("greeting", "what to say"),)

    def __init__(self, greeting: str = "hi", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.greeting = greeting

    def _create(self, grant: bc.CreditGrant, idempotency_key: str) -> bc.Flow[bc.CreditGrant]:
        yield from ()
        return grant

    def _list_page(self, query: bc.ListQuery, cursor: str | None) -> bc.Flow[bc.Page]:
        yield from ()
        return bc.Page(())

    def _get(self, grant_id: str) -> bc.Flow[bc.CreditGrant]:
        yield from ()
        raise bc.NotFoundError(grant_id)


def plugin(*classes: Any) -> SimpleNamespace:
    """A plugin object registering ``classes``."""

    @bc.hookimpl
    def register_providers(register: bc.ProviderRegister) -> None:
        for cls in classes:
            register(cls)

    return SimpleNamespace(register_providers=register_providers)


@pytest.fixture
def registered() -> Iterator[list[str]]:
    """Register plugins for one test (append names to the list); always unregistered after."""
    names: list[str] = []
    yield names
    pm = bc.plugin_manager()
    for name in names:
        pm.unregister(name=name)


def register(names: list[str], obj: Any, name: str) -> None:
    bc.plugin_manager().register(obj, name=name)
    names.append(name)


def installed() -> list[str]:
    return [p.name for p in bc.available_providers()]


def test_local_is_available() -> None:
    providers = {p.name: p for p in bc.available_providers()}
    assert "local" in providers
    local = providers["local"]
    assert local.module.startswith("billing_credits.local")
    assert isinstance(local.capabilities, bc.Capabilities)
    assert "path" in [s.name for s in local.settings]
    assert local.description
    assert installed() == sorted(installed())


def test_get_local_provider_uses_the_configured_database() -> None:
    with bc.get_provider("local") as provider:
        assert isinstance(provider, bc.Provider)
        assert provider.name == "local"
        configured = Path(os.environ["BILLING_CREDITS_DB"])
        assert Path(provider.path) == configured  # type: ignore[attr-defined]
        assert configured.name == "credits.db"


def test_unknown_provider_lists_the_installed_ones() -> None:
    with pytest.raises(bc.UnknownProviderError) as info:
        bc.get_provider("nope")
    message = str(info.value)
    assert "'nope'" in message
    for name in installed():
        assert name in message
    assert "local" in info.value.installed
    assert isinstance(info.value, bc.ConfigurationError)
    assert isinstance(info.value, LookupError)


def test_unknown_setting_is_a_configuration_error() -> None:
    with pytest.raises(bc.ConfigurationError, match="no setting colour") as info:
        bc.get_provider("local", colour="blue")
    assert "path" in str(info.value)
    assert not isinstance(info.value, bc.UnknownProviderError)


def test_third_party_plugin_appears_and_goes(registered: list[str]) -> None:
    assert "echo-test" not in installed()
    register(registered, plugin(EchoProvider), "billing-credits-echo-test")
    assert "echo-test" in installed()
    provider = bc.get_provider("echo-test", greeting="hello")
    assert isinstance(provider, EchoProvider)
    assert provider.greeting == "hello"
    with pytest.raises(bc.UnsupportedOperationError):
        provider.void_grant("g")
    bc.plugin_manager().unregister(name=registered.pop())
    assert "echo-test" not in installed()


def test_a_module_plugin(registered: list[str]) -> None:
    import types

    module = types.ModuleType("billing_credits_echo_module")
    module.register_providers = plugin(EchoProvider).register_providers  # type: ignore[attr-defined]
    register(registered, module, "echo-module")
    assert "echo-test" in installed()


@pytest.mark.parametrize(
    ("bad", "words"),
    [
        (object, "not a billing_credits.Provider"),
        (EchoProvider(), "not a billing_credits.Provider"),
        (type("NoCaps", (EchoProvider,), {"capabilities": None}), "needs a name and capabilities"),
        (type("NoName", (EchoProvider,), {"name": ""}), "needs a name and capabilities"),
    ],
    ids=["class", "instance", "no-capabilities", "no-name"],
)
def test_registering_a_non_provider_errors(registered: list[str], bad: Any, words: str) -> None:
    register(registered, plugin(bad), "bad-plugin")
    with pytest.raises(bc.ConfigurationError, match=words):
        bc.available_providers()


def test_registering_a_duplicate_name_errors(registered: list[str]) -> None:
    impostor = type("Impostor", (EchoProvider,), {"name": "local"})
    register(registered, plugin(impostor), "impostor")
    with pytest.raises(bc.ConfigurationError, match="'local' registered twice"):
        bc.get_provider("local")


def test_registering_the_same_class_twice_is_harmless(registered: list[str]) -> None:
    register(registered, plugin(EchoProvider), "echo-a")
    register(registered, plugin(EchoProvider), "echo-b")
    assert installed().count("echo-test") == 1


def test_check_pending_passes_and_catches_misspelled_hooks() -> None:
    bc.plugin_manager().check_pending()
    pm = pluggy.PluginManager("billing_credits")  # a fresh one: the shared one stays clean
    pm.add_hookspecs(_hookspecs)
    pm.register(plugin(EchoProvider), name="fine")
    pm.check_pending()

    @bc.hookimpl
    def register_provider(register: Any) -> None:  # misspelled on purpose
        raise AssertionError

    pm.register(SimpleNamespace(register_provider=register_provider), name="misspelled")
    with pytest.raises(pluggy.PluginValidationError, match="register_provider"):
        pm.check_pending()


def run_python(code: str, **env: str) -> str:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("BILLING_CREDITS_")}
    environment.update(env)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=environment, check=True, timeout=60)
    return done.stdout.strip()


LIST = "import billing_credits as bc; print(','.join(p.name for p in bc.available_providers()))"


def test_disabled_plugins_are_not_loaded() -> None:
    assert "local" in run_python(LIST).split(",")
    assert "local" not in run_python(LIST, BILLING_CREDITS_DISABLED_PLUGINS="other, local")
    assert run_python(LIST, BILLING_CREDITS_LOAD_PLUGINS="") == ""
    assert "local" in run_python(LIST, BILLING_CREDITS_LOAD_PLUGINS="local").split(",")


# -- the docs match the hooks (after datasette's test_plugin_hooks_are_documented) --------------


def hook_names() -> list[str]:
    hook = bc.plugin_manager().hook
    return sorted(name for name in dir(hook)
                  if not name.startswith("_") and getattr(hook, name).spec is not None)


def test_every_hook_is_a_hookspec() -> None:
    specs = sorted(name for name in dir(_hookspecs)
                   if getattr(getattr(_hookspecs, name), "billing_credits_spec", None))
    assert specs == hook_names()
    assert "register_providers" in specs


@pytest.mark.parametrize("hook", hook_names())
def test_plugin_hooks_are_documented(hook: str) -> None:
    content = DOCS.read_text(encoding="utf-8")
    headings = re.findall(r"^#+ (.+)$", content, flags=re.MULTILINE)
    caller = getattr(bc.plugin_manager().hook, hook)
    signature = f"{hook}({', '.join(caller.spec.argnames)})"
    assert any(h.strip().startswith(signature) for h in headings), (
        f"Missing from {DOCS.name}: a heading {signature}")


def test_documented_environment_variables_exist() -> None:
    content = DOCS.read_text(encoding="utf-8")
    source = Path(_hookspecs.__file__).with_name("_registry.py").read_text(encoding="utf-8")
    for variable in ("BILLING_CREDITS_LOAD_PLUGINS", "BILLING_CREDITS_DISABLED_PLUGINS"):
        assert variable in source
        assert variable in content
    assert "[project.entry-points.billing_credits]" in content
