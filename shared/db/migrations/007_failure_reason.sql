-- hookline: no transaction
-- Run statement by statement (shared/db/migrate.py), each safe to repeat.
-- Why a message failed, as its provider said it: on the message (the failing status
-- that ranks highest) and on each status history entry. Nullable columns with no
-- default: adding one only changes the catalogue, no table rewrite or scan. Still
-- each ALTER waits for an exclusive lock, and every query on the table queues
-- behind a waiting ALTER: better to fail (run it again) than to stall the drains
-- and the message API behind a long transaction.
SET lock_timeout = '5s';
ALTER TABLE messages ADD COLUMN IF NOT EXISTS failure_reason text,
                     ADD COLUMN IF NOT EXISTS failure_code text;
ALTER TABLE message_status_history ADD COLUMN IF NOT EXISTS reason text,
                                   ADD COLUMN IF NOT EXISTS code text;
RESET lock_timeout;
