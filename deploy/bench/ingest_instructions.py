"""Instructions per ingest request, hookline against the bare LPUSH app: the
noise-free view of the ingest comparison (wrk's requests/s move by a tenth from
run to run on this shared VM; instruction counts repeat to within 0.2 %).

    python deploy/bench/ingest_instructions.py [--requests 1000]

Each app runs in one process under valgrind's callgrind (Debian package
``valgrind``), called through WSGI with the Kaleyra receipts in turn, the
callback token set and the environ granian gives (``wsgi.input_terminated``),
writing to the same real Redis, with Prometheus in multi-process mode as
``hookline ingest`` runs it. Two runs per app, of W and
W + N requests: the difference divided by N is the cost of one request, with
start-up and imports cancelled out. The inbox is never empty, so no run sends a
drain kick (the first kick of a process builds its Celery producer app). Counts
instructions, not time: what the server does per request, without the
scheduler, the caches or the neighbours.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from common import cli, require_valgrind, services

HERE = Path(__file__).resolve().parent
ROOT = Path(os.environ.get("BENCH_TREE") or HERE.parents[1])  # common.TREE
BODIES = sorted((ROOT / "tests/fixtures/kaleyra-rcs").glob("dr_*.json"))
TOKEN = "bench-token"
WARM = 300


def _child(app_name: str, n: int) -> None:
    """Serve ``n`` requests in this process (run under callgrind)."""
    sys.path[:0] = [str(ROOT), str(HERE)]
    from werkzeug.test import EnvironBuilder

    if app_name == "bare":
        import bare_app

        app = bare_app.app
    else:
        from hookline.app import create_app

        app = create_app()
    bodies = [p.read_bytes() for p in BODIES]
    environs = [EnvironBuilder(path="/callbacks/kaleyra-rcs", method="POST", data=b,
                               headers={"Content-Type": "application/json",
                                        "Authorization": f"Bearer {TOKEN}"}).get_environ()
                for b in bodies]

    def start_response(status: str, headers: list, exc_info: object = None) -> None:
        if not status.startswith("202"):
            raise SystemExit(f"{app_name} answered {status}")

    for environ in environs:
        # As granian serves it (granian/wsgi.py): werkzeug then reads wsgi.input
        # directly instead of wrapping it in a stream of its own that limits it.
        environ["wsgi.input_terminated"] = True
    for i in range(n):
        environ = dict(environs[i % len(bodies)])
        environ["wsgi.input"] = io.BytesIO(bodies[i % len(bodies)])
        for _ in app(environ, start_response):
            pass


def _instructions(app_name: str, n: int, env: dict[str, str], script: str = __file__) -> int:
    """Instructions callgrind counts for ``script --child app_name n``."""
    out = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
         str(Path(script).resolve()), "--child", app_name, str(n)],
        env=env, capture_output=True, text=True, check=True, timeout=1800)
    found = re.search(r"Collected : (\d+)", out.stderr)
    if not found:
        raise RuntimeError(f"no instruction count from valgrind:\n{out.stderr[-2000:]}")
    return int(found.group(1))


def measure(modes: tuple[str, ...], requests: int, script: str = __file__) -> dict[str, dict]:
    """Instructions per request of ``script --child <mode>``, for each mode, on embedded
    services of their own."""
    import redis

    from shared import inbox

    res: dict[str, dict] = {}
    with services() as env, tempfile.TemporaryDirectory(prefix="hl-bench-prom-") as prom:
        env = {**env, "HOOKLINE_CALLBACK_TOKEN": TOKEN, "PROMETHEUS_MULTIPROC_DIR": prom,
               "PYTHONHASHSEED": "0", "PYTHONPATH": os.pathsep.join([str(HERE), str(ROOT)])}
        redis.Redis.from_url(env["REDIS_URL"]).lpush(inbox.INBOX, b"not empty")
        for mode in modes:
            low = _instructions(mode, WARM, env, script)
            high = _instructions(mode, WARM + requests, env, script)
            res[mode] = {"per_request": (high - low) / requests, "requests": requests}
    return res


def run(requests: int = 1000) -> dict[str, dict]:
    require_valgrind()
    res = measure(("hookline", "bare"), requests)
    res["ratio"] = {"hookline_over_bare": res["hookline"]["per_request"]
                    / res["bare"]["per_request"]}
    return res


def report(res: dict[str, dict]) -> list[str]:
    h, b = res["hookline"]["per_request"], res["bare"]["per_request"]
    return [
        f"ingest instructions per request (callgrind, {res['hookline']['requests']} requests): "
        f"hookline {h:,.0f}, bare LPUSH app {b:,.0f}; hookline/bare {h / b:.2f} "
        "(below 1: hookline runs fewer instructions per request than the bare app)",
    ]


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child(sys.argv[2], int(sys.argv[3]))
        return
    cli(run, report, requests=1000)


if __name__ == "__main__":
    main()
