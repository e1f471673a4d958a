"""WAIT on a Redis Cluster asks about the envelope's own write.

WAIT counts the replicas holding every write made *on its connection*. Ingest pushes
from several request threads through one client, whose pool hands each command any
free connection: if another thread takes the LPUSH's connection before the WAIT runs,
the WAIT runs on a connection whose last write the replica confirmed long ago, and
vouches for an envelope the replica never got. The test makes that interleaving
happen (a neighbour takes the connection the moment the LPUSH gives it back) against
a real Cluster whose replica is frozen, so no push may be confirmed.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shared import inbox
from tests.faults import redis_ha

pytestmark = [pytest.mark.faults, pytest.mark.timeout(90)]


@pytest.fixture
def ha() -> Iterator[redis_ha.Servers]:
    servers = redis_ha.Servers()
    yield servers
    servers.stop()


def _replica_of(nodes: list[redis_ha.Node], master_port: int) -> redis_ha.Node:
    for n in nodes:
        info = n.replication()
        if info["role"] == "slave" and int(info["master_port"]) == master_port:
            return n
    raise AssertionError(f"no replica of {master_port}")


def test_a_push_is_not_confirmed_by_another_connections_write(ha, make_rt):
    nodes = redis_ha.cluster(ha, masters=3, replicas=1)
    url = "redis+cluster://" + ",".join(f"{redis_ha.HOST}:{n.port}" for n in nodes)
    rt = make_rt(REDIS_URL=url, HOOKLINE_BROKER_URL="redis://127.0.0.1:1/0",
                 HOOKLINE_INBOX_WAIT_REPLICAS="1", HOOKLINE_INBOX_WAIT_TIMEOUT_MS="200")
    pusher, key = rt.pusher, rt.pusher.shards[0].inbox
    node = rt.redis.get_node_from_key(key)
    pool = rt.redis.get_redis_connection(node).connection_pool
    # Two connections in the pool, each with a write the replica confirmed.
    warm = [pool.get_connection(), pool.get_connection()]
    for conn in warm:
        conn.send_command("LPUSH", key, b"warm")
        conn.read_response()
        conn.send_command("WAIT", 1, 1000)
        assert conn.read_response() == 1
    for conn in warm:
        pool.release(conn)
    replica = _replica_of(nodes, node.port)
    replica.pause()  # frozen, still counted by its master: nothing new reaches it

    release, taken = pool.release, []

    def neighbour_takes_it(conn):  # another request thread, scheduled right then
        release(conn)
        if not taken:
            taken.append(pool.get_connection())

    pool.release = neighbour_takes_it
    try:
        with pytest.raises(inbox.NotReplicated):
            pusher.push(b"the envelope")
    finally:
        pool.release = release
        replica.resume()
    assert taken, "the interleaving did not happen"
