"""Fan-out test fixtures: a real receiver, runtimes with fast schedules, the API.

The console and ingest tests share them: their conftest.py imports them from here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from shared.runtime import Runtime
from tests.fanout.fanout_helpers import FAST, client_for
from tests.receiver import Receiver
from workers import fanout


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


@pytest.fixture
def fast_rt(make_rt) -> Iterator[Callable[..., Runtime]]:
    """make_rt with FAST settings (overridable); closes the in-process Dispatcher after."""

    def make(**overrides: str) -> Runtime:
        return make_rt(**{**FAST, **overrides})

    yield make
    fanout.close_dispatcher(timeout=10)


@pytest.fixture
def frt(fast_rt) -> Runtime:
    return fast_rt()


@pytest.fixture
def api(frt):
    return client_for(frt)
