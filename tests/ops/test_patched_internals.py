"""The private internals workers/kombu_fix.py and workers/prefork_fix.py patch are still there,
in the shape the patches were written for. A kombu, Celery or billiard release that changes
them fails here, loudly, naming the patch to re-examine, instead of a rebuild silently
dropping a fix (pyproject.toml bounds all three at the versions tested)."""

from __future__ import annotations

import ast
import inspect
import tomllib
from importlib import metadata
from pathlib import Path
from types import SimpleNamespace

import billiard.pool
import pytest
import redis
from celery.concurrency import asynpool
from kombu.transport import redis as kombu_redis
from packaging.requirements import Requirement

from workers import kombu_fix, prefork_fix

ROOT = Path(__file__).resolve().parents[2]
PATCHED = {"kombu": "workers/kombu_fix.py", "celery": "workers/prefork_fix.py",
           "billiard": "workers/prefork_fix.py"}


def _requirements() -> dict[str, Requirement]:
    with (ROOT / "pyproject.toml").open("rb") as f:
        deps = tomllib.load(f)["project"]["dependencies"]
    return {(r := Requirement(d)).name: r for d in deps}


def _method(module: object, cls: str, name: str) -> ast.FunctionDef:
    """The method as written in the library's source file (not as patched in memory)."""
    tree = ast.parse(Path(inspect.getsourcefile(module)).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == cls:
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == name:
                    return item
    pytest.fail(f"{module.__name__}.{cls}.{name} is gone: re-examine the patch that wraps it")


@pytest.mark.parametrize("package", sorted(PATCHED))
def test_patched_packages_have_an_upper_bound_the_installed_version_meets(package: str) -> None:
    req = _requirements()[package]
    uppers = [s for s in req.specifier if s.operator in ("<", "<=", "==", "~=")]
    assert uppers, f"{package} has no upper bound in pyproject.toml, yet {PATCHED[package]} " \
                   "patches its internals"
    installed = metadata.version(package)
    assert req.specifier.contains(installed), (
        f"{package} {installed} is outside {req.specifier}: {PATCHED[package]} was not tested "
        "with it; run tests/ops/test_patched_internals.py on it, then raise the bound")


# --- workers/kombu_fix.py ---------------------------------------------------------------------


def test_kombu_connparams_has_the_shape_kombu_fix_wraps() -> None:
    fn = _method(kombu_redis, "Channel", "_connparams")
    args = [a.arg for a in fn.args.args]
    defaults = [ast.literal_eval(d) for d in fn.args.defaults]
    assert (args, defaults) == (["self", "asynchronous"], [False]), (
        f"kombu's Channel._connparams{ast.unparse(fn.args)} changed signature: "
        "workers/kombu_fix.py calls it as (self, asynchronous)")
    first = ast.unparse(fn.body[0])
    assert first == "conninfo = self.connection.client", (
        f"kombu's Channel._connparams starts with {first!r}: workers/kombu_fix.py guards "
        "self.connection.client being None; re-examine it")


def test_kombu_still_fails_on_a_closed_transport_and_the_fix_turns_it_into_a_connection_error(
) -> None:
    kombu_fix.install()
    patched = kombu_redis.Channel._connparams
    assert getattr(patched, kombu_fix._MARK, False), "kombu_fix.install() patched nothing"
    closed = SimpleNamespace(connection=SimpleNamespace(client=None))
    original = inspect.getclosurevars(patched).nonlocals["original"]
    # The bug the patch exists for: kombu itself trips over the closed transport ...
    with pytest.raises(AttributeError):
        original(closed, False)
    # ... and the patched method raises what kombu's reconnect logic handles.
    with pytest.raises(redis.exceptions.ConnectionError):
        patched(closed)


# --- workers/prefork_fix.py --------------------------------------------------------------------


def test_celery_result_handler_still_stops_reading_at_an_empty_cache() -> None:
    fn = _method(asynpool, "ResultHandler", "on_stop_not_started")
    assert [a.arg for a in fn.args.args] == ["self"], ast.unparse(fn.args)
    loops = [ast.unparse(n.test) for n in ast.walk(fn) if isinstance(n, ast.While)]
    assert any(t.startswith("cache and outqueues") for t in loops), (
        f"celery's ResultHandler.on_stop_not_started loops on {loops}: it no longer stops "
        "at an empty task cache, the case workers/prefork_fix.py exists for; re-examine it")


def test_what_prefork_fix_calls_is_still_there() -> None:
    handler = asynpool.ResultHandler
    flush = inspect.signature(handler._flush_outqueue)
    assert list(flush.parameters) == ["self", "fd", "remove", "process_index",
                                      "on_state_change"], flush
    # on_state_change comes from billiard's ResultHandler, built per instance.
    assert "on_state_change" in inspect.getsource(billiard.pool.ResultHandler)
    iterate = inspect.signature(asynpool.iterate_file_descriptors_safely)
    assert list(iterate.parameters)[:3] == ["fds_iter", "source_data", "hub_method"], iterate
    assert "fileno_to_outq" in inspect.getsource(handler.__init__)
    assert "join_exited_workers" in inspect.signature(billiard.pool.ResultHandler.__init__
                                                       ).parameters
    assert billiard.pool.TERMINATE == prefork_fix.TERMINATE
    assert issubclass(billiard.pool.WorkersJoined, Exception)


def test_prefork_fix_wraps_the_method_once() -> None:
    prefork_fix.install()
    prefork_fix.install()
    patched = asynpool.ResultHandler.on_stop_not_started
    assert getattr(patched, prefork_fix._MARK, False)
    original = inspect.getclosurevars(patched).nonlocals["original"]
    assert not getattr(original, prefork_fix._MARK, False), "installed twice over itself"
