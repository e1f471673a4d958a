"""Metrics: correct sums across the processes of a worker and of ingest, per-batch
recording of outcomes, and the ingest id followed from the 202 into the worker's logs."""

from __future__ import annotations

import logging
import re
import subprocess
import time
from pathlib import Path

import httpx
import orjson
import pytest
from prometheus_client import REGISTRY, CollectorRegistry, Histogram, multiprocess
from prometheus_client.parser import text_string_to_metric_families

from ingest import metrics as ingest_metrics
from shared import inbox
from shared.prom import observe_many
from tests.helpers import drain_all, enqueue, receipt, send_drains
from tests.procs import CALLBACK_AUTH, free_port, hookline, ingest_args, stop, wait_for, wait_http
from workers import metrics


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} of a /metrics page."""
    text = httpx.get(url, timeout=5).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text) for s in family.samples
    }


def total(samples: dict, name: str, **labels: str) -> float:
    return sum(v for (n, lab), v in samples.items()
               if n == name and all(dict(lab).get(k) == want for k, want in labels.items()))


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_observe_many_matches_observe():
    one, many = CollectorRegistry(), CollectorRegistry()
    buckets = (0.1, 1.0, 10.0)
    h1 = Histogram("lat", "x", buckets=buckets, registry=one)
    h2 = Histogram("lat", "x", buckets=buckets, registry=many)
    values = [0.05, 0.1, 0.1000001, 0.9, 1.0, 5.0, 10.0, 11.0, 1e9]
    for v in values:
        h1.observe(v)
    observe_many(h2, values)
    for bound in ("0.1", "1.0", "10.0", "+Inf"):
        assert (one.get_sample_value("lat_bucket", {"le": bound})
                == many.get_sample_value("lat_bucket", {"le": bound})), bound
    assert one.get_sample_value("lat_sum") == many.get_sample_value("lat_sum")
    assert many.get_sample_value("lat_count") == len(values)


def test_drain_counts_applied_duplicates_and_dead_letters(rt):
    labels = dict(source="kaleyra-rcs", type="message.delivered")
    before = {o: sample("hookline_events_applied_total", outcome=o, **labels)
              for o in ("applied", "duplicate")}
    letters = sample("hookline_dead_letters_total", source="kaleyra-rcs")
    batches = sample("hookline_batch_size_count")
    latencies = sample("hookline_ack_to_commit_seconds_count")
    for i in range(3):
        enqueue(rt, receipt("DELIVERED", message_id=f"m-{i}"))
    enqueue(rt, receipt("DELIVERED", message_id="m-0"))  # a duplicate
    enqueue(rt, b"{not json")
    drain_all(rt)
    assert sample("hookline_events_applied_total", outcome="applied", **labels) \
        - before["applied"] == 3
    assert sample("hookline_events_applied_total", outcome="duplicate", **labels) \
        - before["duplicate"] == 1
    assert sample("hookline_dead_letters_total", source="kaleyra-rcs") - letters == 1
    assert sample("hookline_batch_size_count") - batches == 1  # one lease, one observation
    assert sample("hookline_ack_to_commit_seconds_count") - latencies == 5


def _worker(base_env: dict, tmp_path, port: int, **env: str) -> subprocess.Popen:
    return hookline(["worker", "--concurrency", "2", "--metrics-port", str(port)],
                    {**base_env, **env}, tmp_path / "worker.log")


def test_worker_metrics_add_up_across_its_pool_processes(make_rt, base_env, tmp_path):
    # One envelope per lease: many small batches keep both pool processes busy at once.
    rt = make_rt(HOOKLINE_BATCH_SIZE="1")
    prom_dir = tmp_path / "prom"
    port = free_port()
    proc = _worker(base_env, tmp_path, port, HOOKLINE_BATCH_SIZE="1", HOOKLINE_LOG_FORMAT="json",
                   PROMETHEUS_MULTIPROC_DIR=str(prom_dir))
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        wait_http(url)
        ids = [enqueue(rt, receipt("SENT", message_id=f"w-{i}")) for i in range(240)]
        enqueue(rt, receipt("SENT", message_id="w-0"))  # a duplicate
        enqueue(rt, b"]")  # a dead letter
        send_drains(rt, 2)

        def done() -> dict | None:
            s = scrape(url)
            return s if total(s, "hookline_events_applied_total") >= 242 else None

        s = wait_for(done, timeout=60, interval=0.2)
        assert total(s, "hookline_events_applied_total", outcome="applied") == 240
        assert total(s, "hookline_events_applied_total", outcome="duplicate") == 1
        assert total(s, "hookline_events_applied_total", outcome="dead_letter") == 1
        assert total(s, "hookline_dead_letters_total") == 1
        assert total(s, "hookline_batch_size_count") == 242
        assert total(s, "hookline_ack_to_commit_seconds_count") == 242
        assert total(s, "hookline_inbox_depth") == 0
        assert total(s, "hookline_active_leases") == 0
        assert ("hookline_endpoints_failing", ()) in s
        # migrate() made partitions (at least) three days ahead.
        assert total(s, "hookline_partitions_ahead_seconds") >= 3 * 86400
        assert ("hookline_default_partition_rows", ()) in s
        # The sums above came from more than one pool process's files.
        pids = {p.stem.rsplit("_", 1)[1] for p in prom_dir.glob("counter_*.db")}
        assert len(pids) >= 2, pids
    finally:
        stop(proc)
    assert proc.returncode == 0
    # The ingest id of every callback appears in the worker's JSON batch logs.
    logged: set[str] = set()
    for line in (tmp_path / "worker.log").read_text().splitlines():
        if line.startswith("{") and '"ingest_ids"' in line:
            logged.update(orjson.loads(line)["ingest_ids"])
    assert set(ids) <= logged


def test_worker_without_the_variable_uses_a_temporary_directory(base_env, tmp_path):
    port = free_port()
    env = {k: v for k, v in base_env.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    proc = _worker(env, tmp_path, port)
    try:
        wait_http(f"http://127.0.0.1:{port}/metrics")
        found = re.search(r"files in (\S+)\)", (tmp_path / "worker.log").read_text())
        assert found and "hookline-worker-metrics-" in found.group(1)
        assert Path(found.group(1)).is_dir()
    finally:
        stop(proc)
    assert proc.returncode == 0
    assert not Path(found.group(1)).exists()


@pytest.fixture
def ingest_two_workers(base_env, tmp_path):
    port = free_port()
    proc = hookline(ingest_args(port, 2), base_env, tmp_path / "ingest.log")
    base = f"http://127.0.0.1:{port}"
    wait_http(f"{base}/healthz")
    yield base
    stop(proc)


def test_ingest_with_two_workers_counts_every_request_once(ingest_two_workers, rt):
    base = ingest_two_workers
    before = total(scrape(f"{base}/metrics"), "hookline_ingest_requests_total",
                   source="kaleyra-rcs", code="202")
    n = 120
    for i in range(n):
        # A new connection each time, so both server processes take requests.
        r = httpx.post(f"{base}/callbacks/kaleyra-rcs", content=receipt("SENT", f"i-{i}"),
                       headers={"Connection": "close", **CALLBACK_AUTH})
        assert r.status_code == 202
    assert httpx.post(f"{base}/callbacks/nope", content=b"{}").status_code == 404
    # Each process adds its requests to the metrics within a second (ingest/metrics.py),
    # and never counts one twice: once all have, every scrape agrees and stays so.
    def counted(s: dict) -> tuple:
        return (total(s, "hookline_ingest_requests_total", source="kaleyra-rcs", code="202")
                - before,
                total(s, "hookline_ingest_requests_total", source="unknown", code="404"),
                total(s, "hookline_ingest_ack_seconds_count"))

    want = (n, 1, n + 1 + before)
    wait_for(lambda: counted(scrape(f"{base}/metrics")) == want,
             timeout=ingest_metrics.FLUSH_SECONDS + 10)
    time.sleep(ingest_metrics.FLUSH_SECONDS + 0.5)
    for _ in range(6):  # each scrape may land on either process: all must agree
        assert counted(scrape(f"{base}/metrics")) == want
    assert rt.redis.llen(inbox.INBOX) == n


def test_scrape_time_gauges_follow_the_queue(rt):
    from shared import config

    collector = metrics.StateCollector(config.load({"REDIS_URL": rt.settings.redis_url,
                                                    "DATABASE_URL": rt.settings.database_url}))
    enqueue(rt, receipt("SENT"))
    lease = rt.inbox.lease(1)
    time.sleep(0.05)
    values = {f.name: f.samples[0].value for f in collector.collect()}
    assert values["hookline_active_leases"] == 1
    assert values["hookline_oldest_lease_age_seconds"] > 0
    assert values["hookline_inbox_depth"] == 0
    assert values["hookline_endpoints_failing"] == 0
    rt.inbox.release(lease)
    values = {f.name: f.samples[0].value for f in collector.collect()}
    assert values["hookline_active_leases"] == 0


def test_ingest_logs_each_accepted_callback_with_its_ingest_id_at_debug(rt, caplog):
    from ingest.app import create_app

    client = create_app(rt=rt, send_drain=lambda: None).test_client()
    with caplog.at_level(logging.INFO, logger="ingest.callbacks"):
        client.post("/callbacks/kaleyra-rcs", data=receipt("SENT"))
    assert not [r for r in caplog.records if r.name == "ingest.callbacks"]  # quiet at info
    with caplog.at_level(logging.DEBUG, logger="ingest.callbacks"):
        ingest_id = client.post("/callbacks/kaleyra-rcs", data=receipt("READ")).get_json()["id"]
    [record] = [r for r in caplog.records if r.name == "ingest.callbacks"]
    assert record.ingest_id == ingest_id and record.source == "kaleyra-rcs"


def test_an_ingest_process_that_stops_keeps_the_counts_it_noted(base_env, tmp_path):
    # Requests are written to the metrics once a second; a server process told to
    # stop within that second must write them on its way out, or they are lost.
    prom = tmp_path / "prom"
    port = free_port()
    proc = hookline(ingest_args(port, 1), {**base_env, "PROMETHEUS_MULTIPROC_DIR": str(prom)},
                    tmp_path / "ingest.log")
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz")
        n = 20
        with httpx.Client() as client:
            for i in range(n):
                r = client.post(f"http://127.0.0.1:{port}/callbacks/kaleyra-rcs",
                                content=receipt("SENT", f"stop-{i}"), headers=CALLBACK_AUTH)
                assert r.status_code == 202
        stop(proc)  # well within the second
    finally:
        if proc.poll() is None:
            proc.kill()
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(prom))
    assert registry.get_sample_value("hookline_ingest_requests_total",
                                     {"source": "kaleyra-rcs", "code": "202"}) == n
