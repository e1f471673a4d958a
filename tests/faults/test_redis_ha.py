"""The inbox on a Redis Cluster and behind Sentinel, through a master's loss (issue 16).

Ingest is the real Flask app (its test client, in a thread), drains the real drain
rounds (in another thread), PostgreSQL the session's; Redis is a Cluster or a
Sentinel group these tests start on loopback and kill. Every 202 goes into the ledger,
which must balance after the failover: with HOOKLINE_INBOX_WAIT_REPLICAS=1 a 202 means
a replica held the envelope, so the promoted replica has it. Without WAIT, the test
below shows what asynchronous replication loses.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest
import redis

from ingest.app import create_app
from shared import inbox
from tests.faults import redis_ha
from tests.faults.ledger import Ledger
from tests.faults.load import Load, Traffic
from tests.faults.stack import Stack, wait_until
from workers import tasks

pytestmark = [pytest.mark.faults, pytest.mark.timeout(90)]

SOURCE = "kaleyra-rcs"
# A lease cut short by the failover comes back after this; a few reclaims must not
# make a good callback a dead letter.
ENV = dict(HOOKLINE_LEASE_SECONDS="5", HOOKLINE_MAX_ATTEMPTS="5")


@pytest.fixture
def ha() -> Iterator[redis_ha.Servers]:
    servers = redis_ha.Servers()
    yield servers
    servers.stop()


@pytest.fixture(autouse=True)
def _no_broker(monkeypatch) -> None:
    # Drains run in this process; nothing is sent to a broker.
    monkeypatch.setattr(tasks, "send_drain", lambda: None)


class Poster(threading.Thread):
    """Posts callbacks through the real ingest app until stopped; every answer is
    recorded, only 202s are promises."""

    def __init__(self, rt, ledger: Ledger, traffic: Traffic, pause: float = 0.004) -> None:
        super().__init__(daemon=True)
        self.client = create_app(rt=rt, send_drain=lambda: None).test_client()
        self.ledger, self.traffic, self.pause = ledger, traffic, pause
        self.stopping = threading.Event()

    def post(self) -> int:
        body, expect = self.traffic()
        r = self.client.post(f"/callbacks/{SOURCE}", data=body,
                             content_type="application/json")
        self.ledger.record(r.status_code, r.json["id"] if r.status_code == 202 else None,
                           expect)
        return r.status_code

    def run(self) -> None:
        while not self.stopping.is_set():
            self.post()
            time.sleep(self.pause)

    def stop(self) -> None:
        self.stopping.set()
        self.join(10)


class Drainer(threading.Thread):
    """Drain rounds until stopped; a Redis error (the failover) is waited out."""

    def __init__(self, rt) -> None:
        super().__init__(daemon=True)
        self.rt = rt
        self.stopping = threading.Event()
        self.errors = 0

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                if tasks.drain_round(self.rt) is None:
                    time.sleep(0.02)
            except redis.RedisError:
                self.errors += 1
                time.sleep(0.1)

    def stop(self) -> None:
        self.stopping.set()
        self.join(30)


def _settled(rt, ledger: Ledger) -> bool:
    try:
        d = inbox.depths(rt.redis, 5, rt.settings.inbox_shards)
    except redis.RedisError:
        return False
    with rt.pool.connection() as conn:
        return not (d.inbox or d.retry or d.leases) and ledger.outstanding(conn) == 0


def _audit(rt, ledger: Ledger, servers: redis_ha.Servers):
    with rt.pool.connection() as conn:
        result = ledger.audit(conn)
    assert result.clean, f"{result}\ncodes {ledger.codes}\n{servers.logs()}"
    return result


def _settle(rt, ledger: Ledger, servers: redis_ha.Servers, timeout: float = 30) -> None:
    drainer = Drainer(rt)
    drainer.start()
    try:
        wait_until(lambda: _settled(rt, ledger), timeout, 0.2, "ledger settled")
    except TimeoutError:
        with rt.pool.connection() as conn:
            left = ledger.outstanding(conn)
        pytest.fail(f"{left} of {len(ledger)} accepted callbacks without effect\n"
                    f"{servers.logs()}")
    finally:
        drainer.stop()


def _fault_under_load(rt, ha: redis_ha.Servers, prefix: str,
                      fault: Callable[[], None]) -> tuple[Ledger, Drainer]:
    """Callbacks and drains at once; ``fault`` after 200 202s, and 200 more after it.
    Returns the ledger once it balances (audited) and the drainer, for its error count."""
    ledger = Ledger()
    poster, drainer = Poster(rt, ledger, Traffic(prefix)), Drainer(rt)
    poster.start()
    drainer.start()
    wait_until(lambda: len(ledger) >= 200, 20, 0.05, "202s before the fault")
    fault()
    before = len(ledger)
    wait_until(lambda: len(ledger) > before + 200, 30, 0.1, "202s after the fault")
    poster.stop()
    drainer.stop()
    _settle(rt, ledger, ha)
    _audit(rt, ledger, ha)
    return ledger, drainer


def test_a_cluster_inbox_spreads_its_shards_over_masters_and_loses_nothing(ha, make_rt):
    nodes = redis_ha.cluster(ha, masters=3)
    url = "redis+cluster://" + ",".join(f"{redis_ha.HOST}:{n.port}" for n in nodes[:2])
    rt = make_rt(REDIS_URL=url, HOOKLINE_BROKER_URL="redis://127.0.0.1:1/0",
                 HOOKLINE_INBOX_SHARDS="6", **ENV)
    ledger = Ledger()
    poster = Poster(rt, ledger, Traffic("cl"))
    codes = [poster.post() for _ in range(300)]
    assert codes.count(202) == 300, ledger.codes
    shards = rt.inbox.shards()
    owners = {rt.redis.get_node_from_key(s.inbox).port for s in shards}
    assert len(owners) >= 2, "the shards' hash tags all landed on one master"
    assert rt.redis.llen(shards[5].inbox) == 50  # ingest took turns
    # Every script on a Cluster, reclaim included (it names lease keys it builds itself,
    # in the slot of the keys it was given).
    leases = [rt.inbox.lease(10) for _ in shards]
    assert {lease.shard.index for lease in leases} == set(range(6))
    assert rt.inbox.reclaim_expired(now=1e12) == 60
    retried = rt.inbox.lease(5, from_retry=True)
    rt.inbox.release(retried, requeue=retried.items)  # back to its shard's retry list
    assert rt.redis.llen(retried.shard.retry) == 10
    _settle(rt, ledger, ha)
    _audit(rt, ledger, ha)


def test_a_cluster_master_lost_with_wait_loses_nothing_answered_202(ha, make_rt):
    nodes = redis_ha.cluster(ha, masters=3, replicas=1)
    url = "redis+cluster://" + ",".join(f"{redis_ha.HOST}:{n.port}" for n in nodes)
    rt = make_rt(REDIS_URL=url, HOOKLINE_BROKER_URL="redis://127.0.0.1:1/0",
                 HOOKLINE_INBOX_SHARDS="4", HOOKLINE_INBOX_WAIT_REPLICAS="1",
                 HOOKLINE_INBOX_WAIT_TIMEOUT_MS="300", **ENV)
    victim_port = rt.redis.get_node_from_key(rt.inbox.shards()[0].inbox).port
    victim = next(n for n in nodes if n.port == victim_port)
    # The replica takes over its slots; the shards there answer 202 again only once a
    # replica confirms, and the promoted one has none: those refuse, the rest accept.
    ledger, drainer = _fault_under_load(rt, ha, "cf", victim.kill)
    print(f"\ncluster master lost: {dict(ledger.codes)}, drain errors {drainer.errors}")


def _sentinel_rt(make_rt, group: redis_ha.Group, wait: bool):
    return make_rt(REDIS_URL=group.url, HOOKLINE_INBOX_SHARDS="2",
                   HOOKLINE_INBOX_WAIT_REPLICAS="1" if wait else "0",
                   HOOKLINE_INBOX_WAIT_TIMEOUT_MS="200", **ENV)


def _fail_over(ha: redis_ha.Servers, group: redis_ha.Group) -> None:
    """Kill the master; once Sentinel has promoted the replica, give it a new replica
    (the operator replacing the lost machine)."""
    group.master.kill()
    group.promoted()
    ha.start(redis_ha.free_ports(1)[0], "--replicaof", redis_ha.HOST, str(group.replica.port))
    wait_until(lambda: group.replica.replication()["connected_slaves"] == 1, 10, 0.05,
               "a new replica in sync")


def test_sentinel_failover_with_wait_loses_nothing_answered_202(ha, make_rt):
    group = redis_ha.sentinel_group(ha)
    rt = _sentinel_rt(make_rt, group, wait=True)
    ledger, drainer = _fault_under_load(rt, ha, "sf", lambda: _fail_over(ha, group))
    assert ledger.codes["503"] > 0, "no request fell in the failover"
    print(f"\nsentinel failover with WAIT: {dict(ledger.codes)}, "
          f"drain errors {drainer.errors}")


@pytest.mark.parametrize("wait", [False, True], ids=["no-wait", "wait"])
def test_what_the_replica_never_got(ha, make_rt, wait):
    """The replication window made certain: the replica is frozen (SIGSTOP) and cut off
    while callbacks arrive, then the master dies and that replica is promoted."""
    group = redis_ha.sentinel_group(ha)
    rt = _sentinel_rt(make_rt, group, wait)
    ledger = Ledger()
    poster = Poster(rt, ledger, Traffic("win", dup_every=10**9, bad_every=10**9))
    assert [poster.post() for _ in range(20)] == [202] * 20
    wait_until(lambda: group.replica.client().llen(inbox.INBOX) == 10, 5, 0.05,
               "the replica caught up")
    group.replica.pause()
    # Whatever the master writes from now on stays on the master.
    group.master.client().execute_command("CLIENT", "KILL", "TYPE", "slave")
    window = [poster.post() for _ in range(20)]
    group.master.kill()
    group.replica.resume()
    # Without a replica confirming, WAIT lets none of them be answered 202.
    assert window == ([503] if wait else [202]) * 20
    group.promoted()
    _settle_or_count(rt, ledger, ha, wait)


def _settle_or_count(rt, ledger: Ledger, ha: redis_ha.Servers, wait: bool) -> None:
    drainer = Drainer(rt)
    drainer.start()
    try:
        wait_until(lambda: _idle(rt), 20, 0.2, "inbox drained")
    finally:
        drainer.stop()
    with rt.pool.connection() as conn:
        result = ledger.audit(conn)
    if wait:
        assert result.clean, f"{result}\n{ha.logs()}"
    else:
        # Acknowledged by the master, never replicated: lost with it. The 20 posted
        # before the freeze, which had reached the replica, were all applied.
        assert len(result.lost) == 20 and not result.duplicated, result
        print("\nwithout WAIT the failover lost all 20 callbacks answered 202 while the "
              "replica was cut off; the 20 before were applied")


def _idle(rt) -> bool:
    try:
        d = inbox.depths(rt.redis, 5, rt.settings.inbox_shards)
    except redis.RedisError:
        return False
    return not (d.inbox or d.retry or d.leases)


def test_real_processes_behind_sentinel_survive_a_failover(ha, make_rt, base_env, tmp_path):
    """hookline ingest, worker and scheduler with REDIS_URL=redis+sentinel://: the inbox
    and the Celery broker (kombu's sentinel:// transport) both follow the new master."""
    group = redis_ha.sentinel_group(ha)
    rt = _sentinel_rt(make_rt, group, wait=True)  # cleans PostgreSQL, audits at the end
    env = {**base_env, "REDIS_URL": group.url, "HOOKLINE_INBOX_SHARDS": "2",
           "HOOKLINE_INBOX_WAIT_REPLICAS": "1", "HOOKLINE_INBOX_WAIT_TIMEOUT_MS": "200",
           "HOOKLINE_LOG_FORMAT": "text", **ENV}
    stack = Stack(env, tmp_path)
    ledger = Ledger()
    try:
        stack.start(workers=1)
        load = Load(stack.base, ledger, Traffic("rp"), rate=200, seconds=12).start()
        wait_until(lambda: len(ledger) >= 300, 20, 0.1, "202s before the fault")
        _fail_over(ha, group)
        before = len(ledger)
        wait_until(lambda: len(ledger) > before + 200, 20, 0.1, "202s after the failover")
        load.join()
        try:
            wait_until(lambda: _settled(rt, ledger), 40, 0.25, "ledger settled")
        except TimeoutError:
            pytest.fail(f"not settled: {ledger.codes}\n{stack.logs()}\n{ha.logs()}")
        _audit(rt, ledger, ha)
        print(f"\nreal processes, sentinel failover with WAIT: {dict(ledger.codes)}")
    finally:
        stack.stop()
