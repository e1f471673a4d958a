"""The import graph between the layers, read from the source (every import, lazy ones too).

shared is the bottom layer: it imports none of the packages above it. ingest and
workers are siblings that talk through Redis and Celery task names, not imports.
Only the composition root, hookline/, puts them together."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared.db import locks

ROOT = Path(__file__).resolve().parents[1]

FORBIDDEN = {
    "shared": {"ingest", "workers", "hookline"},
    "ingest": {"workers", "hookline"},
    "workers": {"ingest", "hookline"},
}


def _imported_packages(path: Path) -> set[tuple[str, int]]:
    """(top-level package, line) for every absolute import in the file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[tuple[str, int]] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {(alias.name.split(".")[0], node.lineno) for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add((node.module.split(".")[0], node.lineno))
    return found


def _violations(package: str) -> list[str]:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"no modules under {package}/"
    return [f"{path.relative_to(ROOT)}:{line} imports {top}"
            for path in files
            for top, line in sorted(_imported_packages(path), key=lambda t: t[1])
            if top in FORBIDDEN[package]]


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_layer_imports_nothing_above_or_beside_it(package: str) -> None:
    assert _violations(package) == []


def test_the_check_sees_lazy_imports(tmp_path: Path) -> None:
    # The imports that broke the layering were inside functions; make sure they count.
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from workers.tasks import send_drain\n"
                      "    import hookline.cli\n")
    assert _imported_packages(module) == {("workers", 2), ("hookline", 3)}


# --- The module graph: no cycles, no private names across modules ---------------

PACKAGES = ("hookline", "ingest", "shared", "workers")


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules(root: Path) -> dict[str, Path]:
    return {_module_name(path, root): path
            for package in PACKAGES if (root / package).is_dir()
            for path in sorted((root / package).rglob("*.py"))}


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The module of ours that ``name`` (a dotted module or module.attribute) is, or
    the nearest one of ours that contains it; None for third-party names."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def _absolute(node: ast.ImportFrom, module: str, path: Path) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    # A package's own name counts as its first level; a module's package is one up.
    base = base if path.name == "__init__.py" else base[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _bindings(tree: ast.AST, module: str, path: Path,
              modules: dict[str, Path]) -> list[tuple[str, str, int]]:
    """(local name, module of ours it names, line) for every import, inside
    functions and under TYPE_CHECKING too. ``import a.b`` binds ``a.b`` as written."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _resolve(alias.name, modules)
                if target is not None:
                    found.append((alias.asname or alias.name, target, node.lineno))
        elif isinstance(node, ast.ImportFrom):
            source = _absolute(node, module, path)
            for alias in node.names:
                full = f"{source}.{alias.name}"
                target = _resolve(full if full in modules else source, modules)
                if target is not None:
                    found.append((alias.asname or alias.name, target, node.lineno))
    return found


def import_graph(root: Path) -> dict[str, set[str]]:
    modules = _modules(root)
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        graph[module] = {target for _, target, _ in _bindings(tree, module, path, modules)
                         if target != module}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
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

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def private_uses(root: Path) -> list[str]:
    """Every private name (``_x``) one module imports from another, or reads as
    ``module._x``."""
    modules = _modules(root)
    found = []
    for module, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        where = path.relative_to(root)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                source = _absolute(node, module, path)
                if _resolve(source, modules) is None:
                    continue
                found += [f"{where}:{node.lineno} imports {source}.{alias.name}"
                          for alias in node.names if _private(alias.name)]
        named = {local: target for local, target, _ in _bindings(tree, module, path, modules)
                 if target != module}
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and _private(node.attr):
                owner = named.get(ast.unparse(node.value))
                if owner is not None:
                    found.append(f"{where}:{node.lineno} uses {owner}.{node.attr}")
    return sorted(found)


def test_no_import_cycle_between_modules() -> None:
    assert cycles(import_graph(ROOT)) == []


def test_no_private_name_is_used_across_modules() -> None:
    assert private_uses(ROOT) == []


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_the_cycle_check_sees_lazy_and_type_checking_imports(tmp_path: Path) -> None:
    root = _tree(tmp_path, {
        "shared/__init__.py": "",
        "shared/db/__init__.py": "",
        "shared/db/a.py": "from typing import TYPE_CHECKING\n"
                          "if TYPE_CHECKING:\n    from shared.db.b import Thing\n",
        "shared/db/b.py": "def f():\n    from shared.db import a\n",
        "shared/db/c.py": "from . import d\n",
        "shared/db/d.py": "import shared.db.c as c\n",
        "workers/__init__.py": "",
        "workers/x.py": "import celery\nfrom shared.db import a\n",
    })
    assert cycles(import_graph(root)) == [["shared.db.a", "shared.db.b"],
                                          ["shared.db.c", "shared.db.d"]]


def test_the_private_name_check_sees_imports_and_attributes(tmp_path: Path) -> None:
    root = _tree(tmp_path, {
        "ingest/__init__.py": "",
        "ingest/api.py": "def _authenticate(): ...\n_LIMIT = 1\n",
        "ingest/one.py": "from ingest import api\nbefore = api._authenticate\n",
        "ingest/two.py": "from ingest.api import _LIMIT\nimport ingest.api as a\n"
                         "def f():\n    return a._LIMIT, a.__name__\n",
        "ingest/three.py": "import os\n_own = 1\nprint(os._exit, _own)\n",
    })
    assert private_uses(root) == [
        "ingest/one.py:2 uses ingest.api._authenticate",
        "ingest/two.py:1 imports ingest.api._LIMIT",
        "ingest/two.py:4 uses ingest.api._LIMIT",
    ]


def test_the_producer_depends_on_the_configuration_and_the_queue_table_only() -> None:
    # Whatever sends a task imports it; it must not pull the worker in with it.
    assert import_graph(ROOT)["workers.producer"] <= {
        "shared.config", "shared.redis_urls", "workers.queues"}


def test_the_ingest_app_loads_neither_the_worker_app_nor_the_dispatcher() -> None:
    # The composition root imports the producer and the dispatch kick at module
    # level; the worker's Celery app and the dispatcher (with its delivery
    # metrics) stay out of ingest processes.
    code = ("import sys, hookline.app\n"
            "print(sorted(m for m in ('workers.celery_app', 'workers.fanout', "
            "'workers.tasks', 'workers.metrics') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.stdout.strip() == "[]"


def test_advisory_lock_keys_are_unique_within_their_form() -> None:
    # PostgreSQL keeps the one-key and two-key forms apart; within one, two names on
    # one key would exclude each other. Every advisory lock is taken through the
    # registry, so no hex key may appear anywhere else either.
    spaces = [(lock.form, lock.key) for lock in locks.ALL]
    assert len(set(spaces)) == len(spaces), spaces
    assert len({lock.name for lock in locks.ALL}) == len(locks.ALL)
    registered = {name for name, value in vars(locks).items() if isinstance(value, locks.Lock)}
    assert registered == {lock.name.upper() for lock in locks.ALL}
    stray = [f"{path.relative_to(ROOT)}" for package in ("shared", "workers", "ingest", "hookline")
             for path in sorted((ROOT / package).rglob("*.py"))
             if path != ROOT / "shared/db/locks.py" and "0X686F6F" in path.read_text().upper()]
    assert stray == []


# Each test folder and the code it tests.
TEST_FOLDERS = {
    "console": "ingest/console", "db": "shared/db", "fanout": "workers/fanout.py, shared/db/outbox",
    "faults": "the running system", "ingest": "ingest", "ops": "hookline, deploy, shared/config.py",
    "providers": "shared/providers", "workers": "workers, shared/inbox.py",
    "tenants": "tenants across the layers: shared/db/tenants.py, keys.py, ingest's scope",
}


def test_the_tests_mirror_the_code() -> None:
    # Tests live in the folder of the code they test, with that folder's conftest.py;
    # only this file, about the whole tree, stays at the top. Fixtures come from the
    # conftest.py files, never from pytest_plugins strings, and no test module is
    # imported by another (shared helpers live in support modules).
    tests = ROOT / "tests"
    files = sorted(p for p in tests.rglob("*.py") if "fixtures" not in p.relative_to(tests).parts)
    top = [p.name for p in files if p.parent == tests and p.name.startswith("test_")]
    assert top == ["test_layers.py"]
    folders = {p.relative_to(tests).parts[0] for p in files if p.parent != tests}
    assert folders == set(TEST_FOLDERS)
    assert all((tests / folder / "__init__.py").exists() for folder in folders)
    plugins, imported = [], []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Name) and node.id == "pytest_plugins":
                plugins.append(f"{path.relative_to(ROOT)}:{node.lineno}")
            modules = ([node.module or ""] if isinstance(node, ast.ImportFrom)
                       else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            imported += [f"{path.relative_to(ROOT)}:{node.lineno} imports {m}" for m in modules
                         if m.startswith("tests.") and m.rsplit(".", 1)[-1].startswith("test_")]
    assert plugins == []
    assert imported == []
