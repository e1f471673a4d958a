"""The import graph between the layers, read from the source (every import, lazy ones too).

shared is the bottom layer: it imports none of the packages above it. ingest and
workers are siblings that talk through Redis and Celery task names, not imports.
Only the composition root, hookline/, puts them together."""

from __future__ import annotations

import ast
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
