"""Sandboxes: vendor fakes a plugin can start on loopback, seeded with a demo account.

The core knows no vendor: each provider plugin may implement the ``register_sandboxes`` hook
and register a ``start`` function; ``billing-credits sandbox`` starts every registered one and
prints the environment that points the providers at them. Plugins import their fakes inside
``start`` only, so loading a plugin stays cheap.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from ipaddress import ip_address
from urllib.parse import urlsplit

from billing_credits._errors import ConfigurationError

__all__ = ["Sandbox", "SandboxRegister", "SandboxStart"]

_ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")


@dataclass(frozen=True)
class Sandbox:
    """A started sandbox: a vendor fake serving on loopback.

    - ``name``: what it stands for (``"stripe"``), ``url``: its loopback base URL.
    - ``environment``: the variables that point this vendor's providers at it (each a
      provider setting's environment variable, so ``billing-credits providers`` documents it).
    - ``providers``: the provider names those variables configure.
    - ``seeded``: one line per thing the demo account holds, for people.
    - ``files``: example files for trying it out (file name → text), such as customer and
      price maps for a migration out of the demo account.
    """

    name: str
    url: str
    environment: Mapping[str, str]
    providers: Sequence[str] = ()
    seeded: Sequence[str] = ()
    files: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        host = urlsplit(self.url).hostname or ""
        try:
            loopback = ip_address(host).is_loopback
        except ValueError:
            loopback = host == "localhost"
        if not loopback:
            raise ConfigurationError(f"sandbox {self.name!r} must serve on loopback, not {host!r}")
        for name in self.environment:
            if not _ENV_NAME.match(name):
                raise ConfigurationError(f"sandbox {self.name!r}: {name!r} is not a variable name")
        for name in self.files:
            if "/" in name or "\\" in name or name.startswith("."):
                raise ConfigurationError(f"sandbox {self.name!r}: {name!r} is not a plain file name")

    def export_lines(self) -> list[str]:
        """``export NAME=value`` lines for a POSIX shell."""
        return [f"export {key}={shlex.quote(value)}" for key, value in self.environment.items()]


SandboxStart = Callable[[], AbstractContextManager[Sandbox]]
"""Starts a sandbox for the ``with`` block (serving and seeded) and stops it after."""


class SandboxRegister:
    """The ``register`` argument of ``register_sandboxes``: collects ``start`` functions."""

    def __init__(self) -> None:
        self.sandboxes: dict[str, SandboxStart] = {}

    def __call__(self, name: str, start: SandboxStart) -> None:
        if not name or not callable(start):
            raise ConfigurationError("register(name, start) needs a name and a callable")
        if name in self.sandboxes and self.sandboxes[name] is not start:
            raise ConfigurationError(f"sandbox name {name!r} registered twice")
        self.sandboxes[name] = start
