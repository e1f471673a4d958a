"""The fan-out fixtures (a real receiver, fast runtimes, the API client) for these tests too."""

from tests.fanout.conftest import api, fast_rt, frt, receiver

__all__ = ["api", "fast_rt", "frt", "receiver"]
