"""Instructions per delivery attempt on the sender's side: the noise-free view
of fan-out's HTTP path (deliveries/s move by a tenth or more from run to run on
this shared VM; instruction counts repeat closely).

    python deploy/bench/send_instructions.py [--attempts 2000] [--warm 500]

One process under valgrind's callgrind sends signed deliveries one after
another with ``workers.attempt.attempt``, exactly as a sending thread does
(signing, the kept-alive connection of the endpoint's pool, reading the
answer), to ``fast_receiver.py`` in a process of its own. Two runs, of W and
W + N attempts: the difference divided by N is the cost of one attempt, start-up
and imports cancelled out. Claiming and recording in PostgreSQL are not counted
(fanout_bench.py measures the whole).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from common import callgrind_threads, cli, fast_receiver, require_valgrind

HERE = Path(__file__).resolve().parent
ROOT = Path(os.environ.get("BENCH_TREE") or HERE.parents[1])  # common.TREE
# A body the size of a delivery receipt's payload (what it says does not matter here).
BODY = (b'{"type":"message.status","timestamp":"2026-11-30T12:00:00.000000Z","data":'
        b'{"event_id":"evt_0b7f6c1e","source":"kaleyra_rcs","kind":"delivery_status",'
        b'"message_id":"c1a9d8e2-5b7e-4f3a-9d2c-7e1f0a6b3c4d","status":"DELIVERED",'
        b'"recipient":"+447700900123","sender":"hookline-demo","channel":"rcs",'
        b'"occurred_at":"2026-11-30T11:59:59.120000Z","error":null,"data":{}}}')


def _child(url: str, attempts: int) -> None:
    sys.path[:0] = [str(ROOT)]
    from shared import signing
    from shared.db.outbox.claims import Claimed
    from workers.attempt import Pools, attempt

    pools = Pools(timeout=10.0, allow_private=True, keep=4)
    claimed = Claimed("msg_1", "ep_1", url, BODY, [signing.new_secret()], token=None)
    for _ in range(attempts):
        result = attempt(claimed, pools, 60.0)
        if not result.ok:
            raise SystemExit(f"delivery failed: {result.error}")
    pools.close()


def _instructions(url: str, attempts: int) -> int:
    return sum(callgrind_threads(Path(__file__).resolve(), [url, str(attempts)],
                                 dict(os.environ)))


def run(attempts: int = 2000, warm: int = 500) -> dict[str, float]:
    require_valgrind()
    with fast_receiver(threads=4) as (port, _):
        url = f"http://127.0.0.1:{port}/hook"
        low, high = _instructions(url, warm), _instructions(url, warm + attempts)
    return {"per_attempt": (high - low) / attempts, "attempts": attempts}


def report(res: dict[str, float]) -> list[str]:
    return [f"send instructions per delivery attempt (callgrind, {res['attempts']:.0f} "
            f"attempts: sign, POST on a kept-alive connection, read the answer): "
            f"{res['per_attempt']:,.0f}"]


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child(sys.argv[2], int(sys.argv[3]))
        return
    cli(run, report, attempts=2000, warm=500)


if __name__ == "__main__":
    main()
