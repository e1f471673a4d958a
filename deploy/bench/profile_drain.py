"""Profile the drain hot path in-process (no Celery): fill the inbox, then run
drain rounds under pyinstrument and print where the time goes. The process is
set up as a worker pool process is (garbage collector tuned), without the
read-ahead thread, so the profile shows one thread doing all the work.

    python deploy/bench/profile_drain.py [--events 20000]
"""

from __future__ import annotations

import argparse
import time

from common import services


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--events", type=int, default=20_000)
    p.add_argument("--no-profile", action="store_true")
    args = p.parse_args()
    with services() as env:
        from processing import fill_inbox

        from shared import config
        from shared.runtime import Runtime, install
        from workers.tasks import drain_round

        rt = Runtime(config.load(env))
        install(rt)
        fill_inbox(rt.redis, args.events)
        from undo import set_variant

        set_variant("no-ahead")
        profiler = None
        if not args.no_profile:
            from pyinstrument import Profiler

            profiler = Profiler(interval=0.0005)
            profiler.start()
        started = time.perf_counter()
        while drain_round(rt) is not None:
            pass
        elapsed = time.perf_counter() - started
        if profiler:
            profiler.stop()
            print(profiler.output_text(unicode=False, color=False, show_all=False))
        print(f"{args.events} callbacks in {elapsed:.2f}s: {args.events / elapsed:.0f}/s "
              "in one process, no Celery")
        rt.close()


if __name__ == "__main__":
    main()
