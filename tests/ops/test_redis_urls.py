"""Cluster and Sentinel URLs: what the settings accept, the clients made, the broker form."""

from __future__ import annotations

import pytest
from redis.cluster import RedisCluster
from redis.sentinel import SentinelConnectionPool

from shared import config, redis_urls
from workers import celery_app, producer

SENTINEL = "redis+sentinel://:s3cret@10.0.0.1:26379,10.0.0.2/mymaster/2"


def test_a_sentinel_url_names_every_sentinel_the_master_and_the_db():
    parsed, name, db = redis_urls.sentinel_master(SENTINEL)
    assert parsed.hosts == [("10.0.0.1", 26379), ("10.0.0.2", 26379)]
    assert (name, db, parsed.password) == ("mymaster", 2, "s3cret")
    client = redis_urls.client(SENTINEL)  # no connection until first used
    assert isinstance(client.connection_pool, SentinelConnectionPool)
    assert client.connection_pool.service_name == "mymaster"


def test_the_broker_gets_kombus_sentinel_form_and_the_master_name():
    settings = config.load({"REDIS_URL": SENTINEL})
    app = celery_app.make_app(settings)
    assert app.conf.broker_url == ("sentinel://:s3cret@10.0.0.1:26379/2;"
                                   "sentinel://10.0.0.2:26379/2")
    options = app.conf.broker_transport_options
    assert options["master_name"] == "mymaster"
    assert options["visibility_timeout"] == producer.VISIBILITY_TIMEOUT


def test_a_plain_broker_has_no_transport_extras():
    app = celery_app.make_app(config.load({"REDIS_URL": "redis://127.0.0.1:6379/3"}))
    assert app.conf.broker_url == "redis://127.0.0.1:6379/3"
    assert app.conf.broker_transport_options == {"visibility_timeout": 3600}


def test_a_cluster_needs_its_own_broker():
    with pytest.raises(config.ConfigError, match="HOOKLINE_BROKER_URL"):
        config.load({"REDIS_URL": "redis+cluster://10.0.0.1:7000,10.0.0.2:7000"})
    with pytest.raises(config.ConfigError, match="cannot be a Redis Cluster"):
        config.load({"HOOKLINE_BROKER_URL": "redis+cluster://10.0.0.1:7000"})
    settings = config.load({"REDIS_URL": "redis+cluster://10.0.0.1:7000,10.0.0.2",
                            "HOOKLINE_BROKER_URL": SENTINEL})
    assert producer.broker_url(settings).startswith("sentinel://")
    parsed = redis_urls.parse(settings.redis_url, redis_urls.REDIS_PORT)
    assert parsed.hosts == [("10.0.0.1", 7000), ("10.0.0.2", 6379)]


@pytest.mark.parametrize(("url", "message"), [
    ("redis+sentinel://10.0.0.1:26379", "master's name"),
    ("redis+sentinel://10.0.0.1:26379/mymaster/x", "not a number"),
    ("redis+sentinel:///mymaster", "at least one host"),
    ("redis+cluster://10.0.0.1:port", "not host:port"),
])
def test_malformed_urls_fail_at_start_naming_the_variable(url, message):
    with pytest.raises(config.ConfigError, match=f"REDIS_URL: .*{message}"):
        config.load({"REDIS_URL": url, "HOOKLINE_BROKER_URL": "redis://127.0.0.1:6379/0"})


def test_inbox_settings():
    s = config.load({})
    assert (s.inbox_shards, s.inbox_wait_replicas, s.inbox_wait_timeout_ms) == (1, 0, 500)
    s = config.load({"HOOKLINE_INBOX_SHARDS": "8", "HOOKLINE_INBOX_WAIT_REPLICAS": "1",
                     "HOOKLINE_INBOX_WAIT_TIMEOUT_MS": "250"})
    assert (s.inbox_shards, s.inbox_wait_replicas, s.inbox_wait_timeout_ms) == (8, 1, 250)
    with pytest.raises(config.ConfigError, match="HOOKLINE_INBOX_SHARDS must be at most 256"):
        config.load({"HOOKLINE_INBOX_SHARDS": "1000"})


def test_a_cluster_client_is_a_cluster_client(monkeypatch):
    # RedisCluster asks a node for the slot map when made: stand one in.
    monkeypatch.setattr(RedisCluster, "__init__", lambda self, **kw: setattr(self, "kw", kw))
    client = redis_urls.client("rediss+cluster://u:p%40ss@10.0.0.1:7000,10.0.0.2:7001")
    nodes = [(n.host, n.port) for n in client.kw["startup_nodes"]]
    assert nodes == [("10.0.0.1", 7000), ("10.0.0.2", 7001)]
    assert (client.kw["username"], client.kw["password"], client.kw["ssl"]) == ("u", "p@ss", True)
