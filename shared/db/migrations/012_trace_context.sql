-- The trace context a delivery's attempts continue: the W3C traceparent of the drain
-- batch that wrote it (shared.tracing), NULL when tracing is off. A nullable column
-- without a default is a change of the catalogue only: no table rewrite, no long lock.
-- The ALTER waits for an exclusive lock on deliveries, and every claim and enqueue queues
-- behind a waiting ALTER: better to fail (run it again) than to stall them (as in 011).
SET LOCAL lock_timeout = '5s';
ALTER TABLE deliveries ADD COLUMN IF NOT EXISTS traceparent text;
-- A conversion to partitions still under way (shared.db.convert) copies every column
-- of the new table from the legacy one: it needs the column too.
DO $$
BEGIN
    IF to_regclass('deliveries_legacy') IS NOT NULL THEN
        ALTER TABLE deliveries_legacy ADD COLUMN IF NOT EXISTS traceparent text;
    END IF;
END $$;
