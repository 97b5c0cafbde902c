"""The package layout reads one way, top to bottom.

Read from the source (``ast``), every import counts — module level, inside functions and under
``TYPE_CHECKING`` — because a lazy import is still a dependency:

- no import cycles among the modules of ``issuer/`` and ``verifier/`` (a helper two modules share
  lives below both of them);
- no module takes a private name (``_x``) from another module, by ``from m import _x`` or by
  ``m._x`` on an imported module: a name that crosses modules is part of its module's surface;
- ``verifier`` never imports ``issuer`` (the library must not depend on the service);
- entry points sit on top: only ``python -m issuer`` imports the CLI, and the app factory is
  imported only by the commands that serve it (the CLI and the embedded demo).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("issuer", "verifier")


def _modules() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


MODULES = _modules()


@dataclass(frozen=True)
class Use:
    """``module`` uses ``target`` (a module), optionally naming ``name`` in it, at ``line``."""

    module: str
    target: str
    name: str | None
    line: int


def _base(module: str, level: int) -> list[str]:
    parts = module.split(".")
    if MODULES[module].name != "__init__.py":
        parts.pop()
    return parts[: len(parts) - (level - 1)] if level > 1 else parts


def _uses(module: str, source: str | None = None) -> Iterator[Use]:
    if source is None:
        source = MODULES[module].read_text(encoding="utf-8")
    tree = ast.parse(source)
    aliases: dict[str, str] = {}  # local name -> project module it is bound to
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] in PACKAGES:
                    yield Use(module, a.name, None, node.lineno)
                    if a.asname:
                        aliases[a.asname] = a.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                tail = [node.module] if node.module else []
                target = ".".join(_base(module, node.level) + tail)
            else:
                target = node.module or ""
            if target.split(".")[0] not in PACKAGES:
                continue
            for a in node.names:
                sub = f"{target}.{a.name}"
                if sub in MODULES:
                    yield Use(module, sub, None, node.lineno)
                    aliases[a.asname or a.name] = sub
                else:
                    yield Use(module, target, a.name, node.lineno)
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            yield Use(module, aliases[node.value.id], node.attr, node.lineno)


USES = [u for m in MODULES for u in _uses(m)]


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for u in USES:
        if u.target in MODULES and u.target != u.module:
            graph[u.module].add(u.target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_scan_sees_the_packages() -> None:
    assert {"issuer.cli", "issuer.app", "verifier.core", "verifier.jws"} <= set(MODULES)
    assert any(u.module == "issuer.cli" and u.target == "issuer.config" for u in USES)


def test_no_import_cycles() -> None:
    cycles = _cycles(_graph())
    assert not cycles, "import cycles (move the shared part below both): " + "; ".join(
        " <-> ".join(c) for c in cycles
    )


def _private_crossings(uses: list[Use]) -> list[str]:
    return [
        f"{MODULES[u.module].relative_to(ROOT)}:{u.line} takes {u.target}.{u.name}"
        for u in uses
        if u.name is not None
        and u.name.startswith("_")
        and not u.name.startswith("__")
        and u.target != u.module
    ]


def test_no_private_names_cross_modules() -> None:
    crossing = _private_crossings(USES)
    assert not crossing, "private names used across modules (make them public):\n" + "\n".join(
        crossing
    )


def test_verifier_never_imports_issuer() -> None:
    upward = [
        f"{MODULES[u.module].relative_to(ROOT)}:{u.line} imports {u.target}"
        for u in USES
        if u.module.startswith("verifier") and u.target.split(".")[0] == "issuer"
    ]
    assert not upward, "\n".join(upward)


#: Entry-point modules and the only modules allowed to import them.
ENTRY_POINTS = {
    "issuer.cli": {"issuer.__main__"},
    "verifier.cli": {"verifier.__main__"},
    "issuer.app": {"issuer.cli", "issuer.demo"},
}


def test_nothing_imports_the_entry_points() -> None:
    wrong = [
        f"{MODULES[u.module].relative_to(ROOT)}:{u.line} imports {u.target}"
        for u in USES
        if u.target in ENTRY_POINTS and u.module not in ENTRY_POINTS[u.target]
    ]
    assert not wrong, "\n".join(wrong)


def test_the_checks_catch_what_they_claim() -> None:
    # A cycle, a private import (absolute, relative, lazy) and a private attribute are reported.
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
    source = (
        "from issuer.config import _SETTINGS\n"
        "from .store import base\n"
        "def f():\n"
        "    from .crypto import _private\n"
        "    return base._hidden, base.__name__, base.NotFound\n"
    )
    got = [u.split(" takes ")[1] for u in _private_crossings(list(_uses("issuer.cli", source)))]
    assert got == ["issuer.config._SETTINGS", "issuer.crypto._private", "issuer.store.base._hidden"]
