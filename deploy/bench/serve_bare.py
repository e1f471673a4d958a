"""Serve bare_app exactly as `hookline ingest` serves hookline: this runs the real
`hookline ingest` command with the server's application target swapped, so the
server, its worker and thread counts and every other setting stay identical
whatever the production configuration is when the benchmark runs.

    python deploy/bench/serve_bare.py [hookline ingest arguments]
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# BENCH_TREE: another checkout's code (common.TREE).
sys.path[:0] = [os.environ.get("BENCH_TREE") or str(HERE.parents[1]), str(HERE)]

import granian  # noqa: E402

from hookline import cli  # noqa: E402

_Granian = granian.Granian
TARGET = "bare_app:app"
swapped: list[str] = []


def _bare(target: str, *args: object, **kwargs: object) -> object:
    swapped.append(target)
    return _Granian(TARGET, *args, **kwargs)


if __name__ == "__main__":
    granian.Granian = _bare  # type: ignore[misc]
    code = cli.main(["ingest", *sys.argv[1:]])
    if not swapped:
        sys.exit("serve_bare: `hookline ingest` no longer serves with granian.Granian; "
                 "teach serve_bare.py the new server")
    sys.exit(code)
