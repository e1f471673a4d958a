-- Time-partitioned storage (shared/db/partitions.py). The append-only tables become
-- range-partitioned parents, so retention drops a whole partition instead of
-- deleting its rows one by one (a billion deletes a day at full rate, plus the
-- vacuum behind them):
--
--   events, message_status_history, inbound_messages, deliveries  by occurred_at
--     (the provider's time of the event: a retry of a callback carries the same one,
--     so it lands in the same partition however late it arrives)
--   delivery_attempts                                              by attempted_at
--   event_keys (deduplication, below)                              by bucket
--
-- Each parent has a DEFAULT partition for rows outside the partitions made so far
-- (a provider clock far off, a timestamp from years ago); retention deletes from it
-- in batches, and a partition made later takes its rows over. The partitions
-- themselves are made ahead and dropped by the scheduler (partitions.maintain).
--
-- A unique key on a partitioned table must include the partition column, so it
-- cannot dedupe across partitions. Deduplication moves to event_keys: each event
-- writes its (source, dedupe key) into the UTC day bucket of its occurred_at *and*
-- the next HOOKLINE_DEDUPE_DAYS buckets; two callbacks with one key whose times are
-- within that many days share a bucket, and the primary key makes the second one a
-- conflict, which the insert skips (shared/db/events.py).
--
-- Conversion without a pause: the old tables are renamed to *_legacy in this one
-- short transaction and stay readable; new rows go to the partitioned tables, and
-- the scheduler moves the legacy rows across in batches (shared/db/convert.py),
-- deduplicating new callbacks against legacy events meanwhile. On an empty
-- installation the legacy tables are dropped here at once.
--
-- Run it with this version's workers (or none): an old worker would go on writing
-- to the old names. The renames wait for an exclusive lock on each table: better
-- to fail (run it again) than to stall drains and claims behind a long transaction.
SET LOCAL lock_timeout = '5s';

DO $$
DECLARE
    t text;
    r record;
BEGIN
    FOREACH t IN ARRAY ARRAY['delivery_attempts', 'deliveries', 'inbound_messages',
                             'message_status_history', 'events'] LOOP
        EXECUTE format('LOCK TABLE %I IN ACCESS EXCLUSIVE MODE', t);
        -- Index names are schema-wide; renaming an index renames its constraint too.
        FOR r IN SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
                 WHERE i.indrelid = t::regclass LOOP
            EXECUTE format('ALTER INDEX %I RENAME TO %I', r.relname, r.relname || '_legacy');
        END LOOP;
        EXECUTE format('ALTER TABLE %I RENAME TO %I', t, t || '_legacy');
    END LOOP;
END $$;

CREATE TABLE events (LIKE events_legacy INCLUDING DEFAULTS INCLUDING CONSTRAINTS,
                     PRIMARY KEY (id, occurred_at))
    PARTITION BY RANGE (occurred_at);
ALTER SEQUENCE events_id_seq OWNED BY events.id;
CREATE INDEX events_message ON events (source, message_id) WHERE message_id IS NOT NULL;
CREATE INDEX events_type_id ON events (type, id);
CREATE INDEX events_ingest_id ON events (ingest_id);
CREATE INDEX events_received_at ON events (received_at);
-- ?source= pages (GET /v1/events) were served by the old unique (source, dedupe_key),
-- which event_keys replaces.
CREATE INDEX events_source_id ON events (source, id);
-- Event ids are unique through their sequence; lookups by id alone (the event feed,
-- history joins) probe each partition's index.
CREATE INDEX events_id ON events (id);
CREATE TABLE events_default PARTITION OF events DEFAULT;

CREATE TABLE event_keys (
    source     text        NOT NULL,
    dedupe_key text        NOT NULL,
    bucket     timestamptz NOT NULL,  -- a UTC midnight
    PRIMARY KEY (source, dedupe_key, bucket)
) PARTITION BY RANGE (bucket);
CREATE TABLE event_keys_default PARTITION OF event_keys DEFAULT;

CREATE TABLE message_status_history (
    LIKE message_status_history_legacy INCLUDING DEFAULTS INCLUDING CONSTRAINTS,
    PRIMARY KEY (id, occurred_at)
) PARTITION BY RANGE (occurred_at);
ALTER SEQUENCE message_status_history_id_seq OWNED BY message_status_history.id;
CREATE INDEX message_status_history_message ON message_status_history (source, message_id);
CREATE INDEX message_status_history_event ON message_status_history (event_id);
CREATE TABLE message_status_history_default PARTITION OF message_status_history DEFAULT;

CREATE TABLE inbound_messages (
    LIKE inbound_messages_legacy INCLUDING DEFAULTS INCLUDING CONSTRAINTS,
    PRIMARY KEY (event_id, occurred_at)
) PARTITION BY RANGE (occurred_at);
CREATE INDEX inbound_messages_event ON inbound_messages (event_id);
CREATE INDEX inbound_messages_msisdn ON inbound_messages (msisdn, event_id);
CREATE INDEX inbound_messages_sender ON inbound_messages (channel, sender, event_id);
CREATE INDEX inbound_messages_sender_id ON inbound_messages (sender, event_id);
CREATE INDEX inbound_messages_source_id ON inbound_messages (source, event_id);
CREATE TABLE inbound_messages_default PARTITION OF inbound_messages DEFAULT;

-- seq was an identity column; a plain sequence carries on from where it was, so
-- moved rows keep their order among the new ones.
CREATE SEQUENCE deliveries_seq;
SELECT setval('deliveries_seq', coalesce(
    (SELECT last_value FROM pg_sequences
     WHERE schemaname = 'public'
       AND sequencename = split_part(pg_get_serial_sequence('deliveries_legacy', 'seq'),
                                     '.', 2)), 0) + 1, false);
CREATE TABLE deliveries (
    LIKE deliveries_legacy INCLUDING DEFAULTS INCLUDING CONSTRAINTS,
    PRIMARY KEY (id, occurred_at),
    CONSTRAINT deliveries_once UNIQUE (event_id, endpoint_id, type, occurred_at),
    FOREIGN KEY (endpoint_id) REFERENCES endpoints (id) ON DELETE CASCADE
) PARTITION BY RANGE (occurred_at);
ALTER TABLE deliveries ALTER COLUMN seq SET DEFAULT nextval('deliveries_seq');
ALTER SEQUENCE deliveries_seq OWNED BY deliveries.seq;
CREATE INDEX deliveries_id ON deliveries (id);
CREATE INDEX deliveries_due ON deliveries (endpoint_id, next_attempt_at)
    WHERE status IN ('pending', 'failed');
CREATE INDEX deliveries_in_flight ON deliveries (endpoint_id, next_attempt_at)
    WHERE claim_token IS NOT NULL;
CREATE INDEX deliveries_order_rank
    ON deliveries (endpoint_id, message_key, occurred_at, rank, seq)
    WHERE status IN ('pending', 'failed') AND message_key IS NOT NULL;
CREATE INDEX deliveries_endpoint_seq ON deliveries (endpoint_id, seq);
CREATE INDEX deliveries_endpoint_status_seq ON deliveries (endpoint_id, status, seq);
CREATE INDEX deliveries_endpoint_created ON deliveries (endpoint_id, created_at);
CREATE TABLE deliveries_default PARTITION OF deliveries DEFAULT
    WITH (autovacuum_vacuum_scale_factor = 0.02);

CREATE TABLE delivery_attempts (
    LIKE delivery_attempts_legacy INCLUDING DEFAULTS INCLUDING CONSTRAINTS,
    PRIMARY KEY (id, attempted_at)
) PARTITION BY RANGE (attempted_at);
ALTER SEQUENCE delivery_attempts_id_seq OWNED BY delivery_attempts.id;
CREATE INDEX delivery_attempts_delivery ON delivery_attempts (delivery_id, id);
CREATE TABLE delivery_attempts_default PARTITION OF delivery_attempts DEFAULT;

-- Retention deletes the default partitions' old rows (partitions.purge_defaults).
CREATE INDEX ON events_default (occurred_at);
CREATE INDEX ON event_keys_default (bucket);
CREATE INDEX ON message_status_history_default (occurred_at);
CREATE INDEX ON inbound_messages_default (occurred_at);
CREATE INDEX ON deliveries_default (occurred_at);
CREATE INDEX ON delivery_attempts_default (attempted_at);

-- Nothing to move: drop the old tables now (their foreign keys go with them).
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM events_legacy)
       AND NOT EXISTS (SELECT 1 FROM deliveries_legacy) THEN
        DROP TABLE delivery_attempts_legacy, deliveries_legacy, inbound_messages_legacy,
                   message_status_history_legacy, events_legacy;
    END IF;
END $$;
