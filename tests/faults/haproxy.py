"""Debian's HAProxy on loopback, running deploy/haproxy/haproxy.cfg in front of ingests the
test owns: the same defaults, frontend and backend as compose, with `server` lines for
fixed loopback ports instead of the server-template Docker's DNS fills."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from tests.procs import ROOT

CONFIG = ROOT / "deploy" / "haproxy" / "haproxy.cfg"
HAPROXY = shutil.which("haproxy") or next(
    (p for p in ("/usr/sbin/haproxy", "/usr/local/sbin/haproxy") if Path(p).is_file()), None)


def _replace_once(text: str, pattern: str, new: str) -> str:
    out, n = re.subn(pattern, new, text, flags=re.MULTILINE)
    assert n == 1, f"deploy/haproxy/haproxy.cfg: {pattern!r} matched {n} times"
    return out


def loopback_config(port: int, monitor_port: int, ingest_ports: list[int]) -> str:
    """deploy/haproxy/haproxy.cfg bound to 127.0.0.1, its backend the given ingests."""
    text = CONFIG.read_text()
    # The resolvers section (Docker's DNS) up to the next section.
    text = _replace_once(text, r"^resolvers docker\n(?:(?:[ \t].*)?\n)*", "")
    text = _replace_once(text, r"^(\s+)bind :8000$", rf"\1bind 127.0.0.1:{port}")
    text = _replace_once(text, r"^(\s+)bind :8404$", rf"\1bind 127.0.0.1:{monitor_port}")
    servers = "\n".join(f"    server ingest{i + 1} 127.0.0.1:{p}"
                        for i, p in enumerate(ingest_ports))
    return _replace_once(text, r"^\s+server-template ingest .*$", servers)


# httplog: ... <termination state> <actconn>/<feconn>/<beconn>/<srv_conn>/<retries> ...
_COUNTERS = re.compile(r' \S{4} \d+/\d+/\d+/\d+/(\+?)(\d+) \d+/\d+ "POST ')


def retried(log: str) -> tuple[int, int]:
    """(callbacks HAProxy sent again, of which to another replica) in its log."""
    found = _COUNTERS.findall(log)
    return (sum(1 for _, n in found if n != "0"), sum(1 for plus, _ in found if plus))
