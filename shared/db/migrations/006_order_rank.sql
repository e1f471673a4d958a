-- hookline: no transaction
-- Run statement by statement (shared/db/migrate.py), so the indexes are built
-- CONCURRENTLY: writers of deliveries and messages are not blocked while they build.
-- Each step is safe to repeat; a build that was interrupted leaves an invalid index,
-- which the DROP before it removes.

-- Ordered endpoints send one message's events by (occurred_at, rank, seq): on equal
-- times a receipt goes by its status rank (SENT, DELIVERED, READ...), as messages.status
-- does, not by insertion order, which a batch makes alphabetical by dedupe key.
-- Adding the column is instant, but it waits for an exclusive lock, and every query
-- on deliveries queues behind a waiting ALTER: better to fail (run it again) than
-- to stall claims and drains behind a long transaction.
SET lock_timeout = '5s';
ALTER TABLE deliveries ADD COLUMN IF NOT EXISTS rank smallint NOT NULL DEFAULT 0;
RESET lock_timeout;
DROP INDEX CONCURRENTLY IF EXISTS deliveries_order_rank;
CREATE INDEX CONCURRENTLY deliveries_order_rank
    ON deliveries (endpoint_id, message_key, occurred_at, rank, seq)
    WHERE status IN ('pending', 'failed') AND message_key IS NOT NULL;
DROP INDEX CONCURRENTLY IF EXISTS deliveries_order;

-- GET /v1/messages/<id> without ?source= looks a message up by its id alone; the
-- primary key leads with source, and messages are never purged.
DROP INDEX CONCURRENTLY IF EXISTS messages_message_id;
CREATE INDEX CONCURRENTLY messages_message_id ON messages (message_id);
