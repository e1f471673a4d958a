"""A worker outlives its broker restarting (workers/kombu_fix.py), on real Redis:
the channel of a connection that was lost while it held an unacknowledged message
is closed the way Celery's consumer closes it, and that must not raise anything
but the connection errors kombu's handlers expect."""

from __future__ import annotations

import contextlib

from kombu import Connection, Exchange, Queue

from workers import producer


def test_closing_a_lost_channel_with_an_unacked_message_does_not_kill_the_worker(rt):
    name = "hookline-test-broker-loss"
    queue = Queue(name, Exchange(name), routing_key=name)
    conn = Connection(producer.broker_url(rt.settings))
    try:
        channel = conn.default_channel
        conn.Producer(channel).publish({"n": 1}, exchange=queue.exchange, routing_key=name,
                                       declare=[queue])
        message = queue(channel).get(no_ack=False)
        assert message is not None and channel.qos._delivered  # held, not acknowledged
        # How kombu's transport is left once the broker connection is gone: no client,
        # and no pool to take a Redis connection from.
        channel.connection.client = None
        channel._pool = None
        # What the consumer does on a lost connection (connection.release ends here).
        # Before the fix: AttributeError ('NoneType' object has no attribute 'hostname').
        conn.maybe_close_channel(channel)
    finally:
        with contextlib.suppress(Exception):
            conn.release()
        rt.redis.delete(name)
