-- hookline: no transaction
-- Run statement by statement (shared/db/migrate.py), so the indexes are built
-- CONCURRENTLY: ingest and the workers keep writing while they build. Each step is
-- safe to repeat; a build that was interrupted leaves an invalid index, which the
-- DROP before it removes. Better to fail (run it again) than to queue behind a long
-- transaction: lock_timeout.
--
-- The list pages (GET /v1/..., the console) read a page newest first by id; a filter
-- that no index leads with walked the id index over every non-matching row
-- (docs/console.md, "Performance"). Each index here serves one filter's page.
SET lock_timeout = '5s';

-- Dead letters ?until= / ?since=: such a page is newest first by (received_at, id), keyset-
-- paged on both (paging.newest_first); with ?source=, the source's rows in that order.
DROP INDEX CONCURRENTLY IF EXISTS dead_letters_received_at;
CREATE INDEX CONCURRENTLY dead_letters_received_at ON dead_letters (received_at, id);
DROP INDEX CONCURRENTLY IF EXISTS dead_letters_source_received_at;
CREATE INDEX CONCURRENTLY dead_letters_source_received_at
    ON dead_letters (source, received_at, id);
-- Dead letters ?source=, newest first.
DROP INDEX CONCURRENTLY IF EXISTS dead_letters_source_id;
CREATE INDEX CONCURRENTLY dead_letters_source_id ON dead_letters (source, id);

-- Subscriptions ?sender= (each half of it: the sender's rows, the '*' rows), with
-- and without ?status=.
DROP INDEX CONCURRENTLY IF EXISTS subscriptions_sender_id;
CREATE INDEX CONCURRENTLY subscriptions_sender_id ON subscriptions (sender, id);
DROP INDEX CONCURRENTLY IF EXISTS subscriptions_sender_status_id;
CREATE INDEX CONCURRENTLY subscriptions_sender_status_id ON subscriptions (sender, status, id);

-- Inbound ?sender= without ?channel= (inbound_messages_sender leads with channel), and
-- ?source=.
DROP INDEX CONCURRENTLY IF EXISTS inbound_messages_sender_id;
CREATE INDEX CONCURRENTLY inbound_messages_sender_id ON inbound_messages (sender, event_id);
DROP INDEX CONCURRENTLY IF EXISTS inbound_messages_source_id;
CREATE INDEX CONCURRENTLY inbound_messages_source_id ON inbound_messages (source, event_id);
RESET lock_timeout;
