"""The house rules, read from the source with ``ast`` (nothing is imported):

1. no import circle anywhere in ``src/`` or ``providers/*/src/``, counting imports inside
   functions and under ``TYPE_CHECKING``;
2. every subpackage of ``billing_credits`` says in its ``__init__`` docstring what it owns
   ("Owns:") and what it may import ("May import:"), and imports nothing else;
3. no private module of the core imports the package root, no vendor module its own root;
4. no source module over 900 lines.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MAX_LINES = 900


def source_roots(root: Path = ROOT) -> dict[str, Path]:
    """Every top-level package under ``src/`` and ``providers/*/src/``, by name."""
    found = {}
    for base in [root / "src", *sorted((root / "providers").glob("*/src"))]:
        for package in sorted(base.iterdir()):
            if (package / "__init__.py").is_file():
                found[package.name] = package
    return found


def modules(roots: Mapping[str, Path]) -> dict[str, Path]:
    """Dotted module name → file, for every ``.py`` under the roots."""
    found = {}
    for name, package in roots.items():
        for path in sorted(package.rglob("*.py")):
            parts = [name, *path.relative_to(package).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def imports_of(module: str, path: Path) -> set[str]:
    """Every module named by an import anywhere in the file (functions, ``TYPE_CHECKING``
    blocks and all): ``from x import y`` names ``x`` and, when it is a module, ``x.y``."""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    named: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            named.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            named.add(source)
            named.update(f"{source}.{alias.name}" for alias in node.names)
    return named


def graph(found: Mapping[str, Path]) -> dict[str, set[str]]:
    """Module → the modules of the tree it imports."""
    return {m: {t for t in imports_of(m, p) if t in found and t != m} for m, p in found.items()}


def cycles(edges: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The import circles: every strongly connected component of more than one module
    (Tarjan's algorithm, iterative), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def a_path(edges: Mapping[str, Iterable[str]], component: list[str]) -> list[str]:
    """One concrete circle inside a component, for the failure message."""
    members = set(component)
    path = [component[0]]
    seen = {component[0]: 0}
    while True:
        step = next(t for t in sorted(edges[path[-1]]) if t in members)
        if step in seen:
            return [*path[seen[step]:], step]
        seen[step] = len(path)
        path.append(step)


def test_no_import_circle() -> None:
    edges = graph(modules(source_roots()))
    circles = [" -> ".join(a_path(edges, c)) for c in cycles(edges)]
    assert not circles, "import circles:\n" + "\n".join(circles)


def test_the_circle_finder_sees_function_level_and_type_checking_imports(tmp_path: Path) -> None:
    # A synthetic tree with the circles the old layout had: one through a function-level
    # import, one under TYPE_CHECKING, one through the package root.
    package = tmp_path / "src" / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("from ._a import A\n")
    (package / "_a.py").write_text("A = 1\ndef f():\n    from ._b import B\n")
    (package / "_b.py").write_text("B = 2\nfrom ._a import A\n")
    (package / "_c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .sub._d import D\n")
    (package / "sub" / "__init__.py").write_text('"""x"""\n')
    (package / "sub" / "_d.py").write_text("from .._c import *\nD = 1\n")
    (package / "_e.py").write_text("from . import _a\n")
    (package / "_root_user.py").write_text("import pkg\n")
    (package / "_f.py").write_text("from pkg import _root_user\n")
    (tmp_path / "providers").mkdir()
    edges = graph(modules(source_roots(tmp_path)))
    found = cycles(edges)
    assert ["pkg._a", "pkg._b"] in found
    assert ["pkg._c", "pkg.sub._d"] in found
    assert ["pkg", "pkg._a", "pkg._b"] not in found  # __init__ -> _a only: not a circle
    edges["pkg._a"].add("pkg")
    assert any({"pkg", "pkg._a", "pkg._b"} <= set(c) for c in cycles(edges))
    assert " -> ".join(a_path(edges, ["pkg._c", "pkg.sub._d"])) == "pkg._c -> pkg.sub._d -> pkg._c"


CORE = ROOT / "src" / "billing_credits"
SUBPACKAGES = sorted(p.parent for p in CORE.glob("*/__init__.py"))


def bottom_layer() -> set[str]:
    """The flat private modules of the core (its bottom layer)."""
    return {f"billing_credits.{p.stem}" for p in CORE.glob("_*.py")
            if p.stem not in ("__init__", "__main__")}


def allowed_imports(docstring: str) -> set[str] | None:
    """What the "May import:" paragraph names: ``billing_credits`` modules and subpackages.
    "the bottom layer" without a list in parentheses allows every bottom module; "the public
    API" allows the package root. None when the paragraph is missing."""
    match = re.search(r"May import:(.*?)(?:\n\s*\n|\Z)", docstring, re.S)
    if match is None:
        return None
    text = match.group(1)
    allowed: set[str] = set()
    named = re.findall(r"``([\w.]+)``", text)
    for name in named:
        allowed.add(name if name.startswith("billing_credits") else f"billing_credits.{name}")
    if re.search(r"the bottom layer(?! \()", text):
        allowed |= bottom_layer()
    if "public API" in text:
        allowed.add("billing_credits")
    return allowed


@pytest.mark.parametrize("package", SUBPACKAGES, ids=lambda p: p.name)
def test_every_subpackage_says_what_it_owns_and_may_import(package: Path) -> None:
    docstring = ast.get_docstring(ast.parse((package / "__init__.py").read_text(encoding="utf-8")))
    assert docstring, f"{package.name}/__init__.py has no docstring"
    assert "Owns:" in docstring, f"{package.name}: the docstring does not say what it owns"
    allowed = allowed_imports(docstring)
    assert allowed is not None, f"{package.name}: the docstring does not say what it may import"
    own = f"billing_credits.{package.name}"
    found = modules({"billing_credits": CORE})
    core_and_parts = set(found)
    wrong = []
    for module, path in found.items():
        if module != own and not module.startswith(own + "."):
            continue
        for target in imports_of(module, path):
            if target not in core_and_parts or target == own or target.startswith(own + "."):
                continue
            if target in allowed or any(target.startswith(a + ".") for a in allowed
                                        if a != "billing_credits"):
                continue
            wrong.append(f"{module} imports {target}")
    assert not wrong, f"{package.name} imports what its docstring does not allow:\n" + "\n".join(wrong)


def test_the_may_import_reader() -> None:
    assert allowed_imports("Owns: x.\n\nMay import: ``_money`` and ``consumption``.\n") == {
        "billing_credits._money", "billing_credits.consumption"}
    assert "billing_credits._errors" in (allowed_imports("May import: the bottom layer.") or ())
    assert allowed_imports("Owns: x.") is None


def test_no_module_imports_its_package_root() -> None:
    """Not its top-level package, nor any package it sits in (``from . import x`` counts)."""
    found = modules(source_roots())
    # The core's clients of the public API (the embedded provider and the test kit) may use it.
    public_clients = ("billing_credits.local", "billing_credits.testing")
    wrong = []
    for module, path in found.items():
        parts = module.split(".")
        ancestors = {".".join(parts[:i]) for i in range(1, len(parts))}
        if module.startswith(public_clients):
            ancestors.discard("billing_credits")
        wrong += [f"{module} imports {target}" for target in sorted(imports_of(module, path) & ancestors)]
    assert not wrong, "\n".join(wrong)


def test_no_source_module_over_900_lines() -> None:
    long = {str(p.relative_to(ROOT)): n for p in modules(source_roots()).values()
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"
