-- hookline: no transaction
-- Run statement by statement (shared/db/migrate.py), each safe to repeat.
-- Deduplication and history are kept at least HOOKLINE_RETENTION_DAYS after a
-- callback's *receipt*, whatever its provider stamped (shared/db/retention.py). The
-- events carry received_at already; their dedupe keys get it here, so retention can
-- tell a key received yesterday for a receipt stamped last year (in a default
-- partition) from one that is truly old. A nullable column with no default: only the
-- catalogue changes, no rewrite of any partition. Keys written before it have NULL and
-- go by their bucket, as before. The ALTER waits for an exclusive lock on event_keys,
-- and every drain queues behind a waiting ALTER: better to fail (run it again) than to
-- stall them behind a long transaction.
SET lock_timeout = '5s';
ALTER TABLE event_keys ADD COLUMN IF NOT EXISTS received_at timestamptz;
RESET lock_timeout;
