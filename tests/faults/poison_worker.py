"""`hookline worker`, plus a provider format that exists only in the tests and
crashes on demand: the poison callback of the fault suite.

Run as ``python -m tests.faults.poison_worker worker ...``: it registers the
format, then hands over to the real command line (hookline.cli.main), so the
worker under test is the production one. Nothing in shared/ or workers/ knows
about it, and no environment variable can switch it on in production.

A kaleyra-rcs body with ``"hooklineTestPoison": "raise"`` makes the parser
raise (a bug in a parser); ``"exit"`` kills the pool process that parses it
(a segfault, the OOM killer) in the middle of its batch.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import shared.providers as registry
from hookline.cli import main
from shared.providers import Format

KEY = "hooklineTestPoison"


def _matches(doc: Any, event: str | None) -> bool:
    return isinstance(doc, dict) and KEY in doc


def _parse(doc: Any, event: str | None) -> list:
    if doc[KEY] == "exit":
        os._exit(70)
    raise RuntimeError(f"poisoned on purpose ({doc.get('n')})")


POISON = Format(source="kaleyra-rcs", name="test-poison", matches=_matches, parse=_parse)
# Checked before the real formats of the source; Celery forks its pool after this.
registry._BY_SOURCE["kaleyra-rcs"] = (POISON, *registry._BY_SOURCE["kaleyra-rcs"])

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
