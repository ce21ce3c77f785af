"""The import floors of certkit, checked over the ``ast`` of every module (function-local imports included).

    certkit_app                 application layer: demo, CLI, digits data and reference models
    conformal                   may import certify and smoothing
    certify    smoothing        never import each other, nor conformal
    certkit                     ground floor: imports none of the above

Nothing in the library imports ``certkit_app``, and no two modules import each other, directly or
through a chain (a cycle hidden in a function-local import is still a cycle). See ``docs/architecture.md``.
The checker itself is tested on planted trees, so that it is known to fail when it should.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("certkit", "certify", "smoothing", "conformal", "certkit_app")

# Top-level package -> top-level packages it must never import.
FORBIDDEN: dict[str, frozenset[str]] = {
    "certkit": frozenset({"certify", "smoothing", "conformal", "certkit_app"}),
    "certify": frozenset({"smoothing", "conformal", "certkit_app"}),
    "smoothing": frozenset({"certify", "conformal", "certkit_app"}),
    "conformal": frozenset({"certkit_app"}),
    "certkit_app": frozenset(),
}


@dataclass(frozen=True)
class Edge:
    """``importer`` imports ``imported`` (both dotted module names) at ``line`` of ``path``."""

    importer: str
    imported: str
    path: str
    line: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.importer} -> {self.imported}"


def discover(root: Path) -> dict[str, tuple[Path, bool]]:
    """Every module of the checked packages under ``root``: dotted name -> (file, is_package)."""
    modules: dict[str, tuple[Path, bool]] = {}
    for pkg in PACKAGES:
        if not (root / pkg).is_dir():
            continue
        for path in sorted((root / pkg).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts = parts[:-1]
            modules[".".join(parts)] = (path, is_package)
    return modules


def _known(name: str, modules: dict[str, tuple[Path, bool]]) -> str | None:
    """``name`` or its longest prefix that is a module of ours (None: not ours)."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


def import_edges(root: Path) -> list[Edge]:
    """All imports between our modules, wherever they appear in the file (top level, functions, TYPE_CHECKING)."""
    modules = discover(root)
    edges: list[Edge] = []
    for name, (path, is_package) in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        rel = str(path.relative_to(root))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                if node.level:  # relative: resolve against this module's package
                    base = name.split(".") if is_package else name.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                # ``from pkg import sub`` imports the submodule when there is one, else a name of ``pkg``.
                targets = [f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules else source
                           for alias in node.names]
            for target in targets:
                known = _known(target, modules)
                if known is not None:
                    edges.append(Edge(name, known, rel, node.lineno))
    return edges


def forbidden_edges(edges: list[Edge]) -> list[Edge]:
    """Edges that go down-to-up or sideways between floors."""
    return [e for e in edges if e.imported.split(".")[0] in FORBIDDEN[e.importer.split(".")[0]]]


def import_cycles(edges: list[Edge]) -> list[list[str]]:
    """Strongly connected components with more than one module, or a module importing itself (Tarjan)."""
    graph: dict[str, set[str]] = {}
    for e in edges:
        graph.setdefault(e.importer, set()).add(e.imported)
        graph.setdefault(e.imported, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

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
            if len(component) > 1 or v in graph[v]:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


# ---------------------------------------------------------------------------------------------
# The repository


@cache
def _repository_edges() -> tuple[Edge, ...]:
    return tuple(import_edges(ROOT))


def test_every_package_is_scanned() -> None:
    modules = discover(ROOT)
    assert {m.split(".")[0] for m in modules} == set(PACKAGES)
    edges = _repository_edges()
    # Function-local imports are seen (the demo imports its sections inside a function).
    assert any(e.importer == "certkit_app.demo" and e.imported == "certkit_app.demos.bounds" for e in edges)


def test_no_import_goes_up_or_sideways() -> None:
    bad = forbidden_edges(list(_repository_edges()))
    assert not bad, "forbidden imports (see docs/architecture.md):\n" + "\n".join(map(str, bad))


def test_no_import_cycle() -> None:
    cycles = import_cycles(list(_repository_edges()))
    assert not cycles, "import cycles between modules:\n" + "\n".join(" <-> ".join(c) for c in cycles)


# ---------------------------------------------------------------------------------------------
# The checker fails when it should


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


CLEAN = {
    "certkit/__init__.py": "from certkit.errors import E\n",
    "certkit/errors.py": "class E(Exception): ...\n",
    "certify/__init__.py": "from certify.api import f\n",
    "certify/api.py": "from certkit.errors import E\n\ndef f(): ...\n",
    "smoothing/__init__.py": "import certkit\n",
    "conformal/__init__.py": "from certify import api\nimport smoothing\n",
    "certkit_app/__init__.py": "import conformal, certify.api, smoothing, certkit\n",
}


def test_checker_passes_a_clean_tree(tmp_path: Path) -> None:
    _write(tmp_path, CLEAN)
    edges = import_edges(tmp_path)
    assert Edge("conformal", "certify.api", "conformal/__init__.py", 1) in edges  # `from pkg import submodule`
    assert forbidden_edges(edges) == [] and import_cycles(edges) == []


@pytest.mark.parametrize(("rel", "source", "edge"), [
    ("certkit/bad.py", "import certify\n", ("certkit.bad", "certify")),                       # base imports a package
    ("certkit/bad.py", "def f():\n    from certkit_app import x\n", ("certkit.bad", "certkit_app")),
    ("certify/bad.py", "def f():\n    import smoothing\n", ("certify.bad", "smoothing")),      # sideways, hidden
    ("smoothing/bad.py", "from certify.api import f\n", ("smoothing.bad", "certify.api")),
    ("certify/bad.py", "from conformal import thing\n", ("certify.bad", "conformal")),         # certify -> conformal
    ("smoothing/bad.py", "if True:\n    import conformal\n", ("smoothing.bad", "conformal")),
    ("conformal/bad.py", "def f():\n    from certkit_app.digits import m\n", ("conformal.bad", "certkit_app.digits")),
    ("certify/bad.py", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import certkit_app\n",
     ("certify.bad", "certkit_app")),
])
def test_checker_catches_a_planted_forbidden_import(tmp_path: Path, rel: str, source: str,
                                                    edge: tuple[str, str]) -> None:
    _write(tmp_path, {**CLEAN, rel: source, "certkit_app/digits.py": ""})
    bad = [(e.importer, e.imported) for e in forbidden_edges(import_edges(tmp_path))]
    assert bad == [edge]


@pytest.mark.parametrize("files", [
    {  # two modules importing each other, one of them inside a function
        "certify/a.py": "from certify.b import g\n\ndef f(): ...\n",
        "certify/b.py": "def g():\n    from certify.a import f\n",
    },
    {  # a chain of three through relative imports
        "certify/sub/__init__.py": "",
        "certify/sub/a.py": "from . import b\n",
        "certify/sub/b.py": "from .c import x\n",
        "certify/sub/c.py": "from ..sub import a\nx = 1\n",
    },
    {  # a submodule importing a name from its own package's __init__, which imports the submodule
        "certify/__init__.py": "from certify.api import f\n",
        "certify/api.py": "from certify import helper\n\ndef f(): ...\n",
        "certify/helper_mod.py": "",
    },
])
def test_checker_catches_a_planted_cycle(tmp_path: Path, files: dict[str, str]) -> None:
    _write(tmp_path, {**CLEAN, **files})
    edges = import_edges(tmp_path)
    assert forbidden_edges(edges) == []
    cycles = import_cycles(edges)
    assert len(cycles) == 1 and len(cycles[0]) >= 2
