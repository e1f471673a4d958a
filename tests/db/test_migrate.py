"""Migrations on a database of their own: applied once, re-runnable, and the
no-transaction files' indexes valid."""

from __future__ import annotations

import threading

import psycopg
import pytest

from shared.db.migrate import migrate, migration_files, statements


def _valid(url: str, index: str) -> bool | None:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT i.indisvalid FROM pg_index i JOIN pg_class c "
                           "ON c.oid = i.indexrelid WHERE c.relname = %s", (index,)).fetchone()
    return None if row is None else row[0]


def test_statements_split_at_line_end_semicolons_and_skip_comments():
    sql = "-- hookline: no transaction\n-- why\nSELECT 1;\n\n-- more\nSELECT 'a;b'\n  ;\n-- end\n"
    assert statements(sql) == ["-- hookline: no transaction\n-- why\nSELECT 1",
                               "-- more\nSELECT 'a;b'"]


def test_each_migration_once_and_the_concurrent_indexes_valid(fresh_url):
    assert migrate(fresh_url) == [v for v, _ in migration_files()]
    assert migrate(fresh_url) == []
    assert _valid(fresh_url, "deliveries_order_rank") is True
    assert _valid(fresh_url, "messages_message_id") is True
    assert _valid(fresh_url, "deliveries_order") is None  # replaced
    for index in ("dead_letters_received_at", "dead_letters_source_received_at",
                  "dead_letters_source_id",
                  "subscriptions_sender_id", "subscriptions_sender_status_id",
                  "inbound_messages_sender_id", "inbound_messages_source_id",
                  "subscriptions_tenant_key", "messages_tenant", "events_default_tenant_id",
                  "inbound_messages_default_tenant_id"):
        assert _valid(fresh_url, index) is True, index


def test_an_interrupted_no_transaction_migration_runs_again_from_the_top(fresh_url):
    # Up to 006 only: its CONCURRENTLY builds are for the tables before partitioning (010).
    migrate(fresh_url, until="006_order_rank")
    with psycopg.connect(fresh_url, autocommit=True) as conn:
        # What a build killed half-way leaves: an invalid index, the file unrecorded.
        conn.execute("UPDATE pg_index SET indisvalid = false WHERE indexrelid = "
                     "'messages_message_id'::regclass")
        conn.execute("DELETE FROM schema_migrations WHERE version = '006_order_rank'")
    assert migrate(fresh_url, until="006_order_rank") == ["006_order_rank"]
    assert _valid(fresh_url, "messages_message_id") is True


def test_two_migrations_at_once_both_succeed(fresh_url):
    # The second used to wait inside pg_advisory_lock, holding a snapshot that the
    # first's CREATE INDEX CONCURRENTLY waited out: PostgreSQL failed one of them.
    out: dict[int, object] = {}

    def run(i: int) -> None:
        try:
            out[i] = migrate(fresh_url)
        except Exception as exc:
            out[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(map(str, out.values())) == sorted(
        [str([v for v, _ in migration_files()]), "[]"]), out


def test_the_failure_columns_are_added_without_a_rewrite(fresh_url):
    # 007 on a table with rows: nullable columns without a default change the catalogue
    # only, so the table keeps its file (a rewrite would give it a new one).
    migrate(fresh_url)
    with psycopg.connect(fresh_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE messages DROP COLUMN failure_reason, DROP COLUMN failure_code")
        conn.execute("ALTER TABLE message_status_history DROP COLUMN reason, DROP COLUMN code")
        conn.execute("DELETE FROM schema_migrations WHERE version = '007_failure_reason'")
        conn.execute("INSERT INTO messages (source, message_id, channel, status, status_rank, "
                     "last_event_at) SELECT 'comapi', 'm' || i, 'sms', 'sent', 1, now() "
                     "FROM generate_series(1, 1000) i")
        before = conn.execute("SELECT pg_relation_filenode('messages')").fetchone()
    assert migrate(fresh_url) == ["007_failure_reason"]
    with psycopg.connect(fresh_url) as conn:
        assert conn.execute("SELECT pg_relation_filenode('messages')").fetchone() == before
        columns = conn.execute(
            "SELECT table_name, column_name, is_nullable, column_default "
            "FROM information_schema.columns WHERE (table_name, column_name) IN "
            "(('messages', 'failure_reason'), ('messages', 'failure_code'), "
            "('message_status_history', 'reason'), ('message_status_history', 'code')) "
            "ORDER BY 1, 2").fetchall()
    assert columns == [("message_status_history", "code", "YES", None),
                       ("message_status_history", "reason", "YES", None),
                       ("messages", "failure_code", "YES", None),
                       ("messages", "failure_reason", "YES", None)]


def test_the_failure_columns_give_up_rather_than_queue_behind_a_long_transaction(fresh_url):
    migrate(fresh_url)
    with psycopg.connect(fresh_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE messages DROP COLUMN failure_reason, DROP COLUMN failure_code")
        conn.execute("DELETE FROM schema_migrations WHERE version = '007_failure_reason'")
    with psycopg.connect(fresh_url) as reader:
        reader.execute("SELECT count(*) FROM messages")  # a long read holds its lock
        with pytest.raises(psycopg.errors.LockNotAvailable):
            migrate(fresh_url)
    assert migrate(fresh_url) == ["007_failure_reason"]
