-- hookline: no transaction
-- Tenants: the customers one hookline serves (docs/tenants.md). Run statement by
-- statement (shared/db/migrate.py) so the new unique index on subscriptions builds
-- CONCURRENTLY while ingest and the workers keep writing; every step is safe to repeat.
--
-- The tenant columns on the big (and partitioned) tables are ADD COLUMN nullable with
-- no default: a catalogue change only, instant on a running system, and each existing
-- partition gets it from its parent. Rows from before belong to no tenant (NULL): only
-- the operator sees them.
SET lock_timeout = '5s';

CREATE TABLE IF NOT EXISTS tenants (
    id         text        PRIMARY KEY,
    name       text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Which tenant an event without a callback key belongs to: the owner of its
-- (source, sender). One owner per pair.
CREATE TABLE IF NOT EXISTS tenant_senders (
    source    text NOT NULL,
    sender    text NOT NULL,
    tenant_id text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    channel   text,
    PRIMARY KEY (source, sender)
);
CREATE INDEX IF NOT EXISTS tenant_senders_tenant ON tenant_senders (tenant_id);

-- API, callback and operator keys. Only the SHA-256 of a key is kept: a key is 256
-- random bits (shared/db/keys.py), so a fast hash cannot be brute-forced and a
-- lookup by hash is one index probe. A revoked key stays listed, with revoked_at.
CREATE TABLE IF NOT EXISTS api_keys (
    id           text        PRIMARY KEY,
    tenant_id    text        REFERENCES tenants (id) ON DELETE CASCADE,
    name         text        NOT NULL,
    kind         text        NOT NULL CHECK (kind IN ('api', 'callback', 'operator')),
    secret_hash  bytea       NOT NULL UNIQUE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz,
    CONSTRAINT api_keys_operator_has_no_tenant CHECK ((kind = 'operator') = (tenant_id IS NULL))
);
CREATE INDEX IF NOT EXISTS api_keys_tenant ON api_keys (tenant_id, created_at);

ALTER TABLE events ADD COLUMN IF NOT EXISTS tenant_id text;
-- A conversion still under way (shared/db/convert.py) copies the new tables' columns
-- from the legacy ones, so those get the column too.
DO $$ BEGIN IF to_regclass('events_legacy') IS NOT NULL THEN ALTER TABLE events_legacy ADD COLUMN IF NOT EXISTS tenant_id text; END IF; END $$;
DO $$ BEGIN IF to_regclass('inbound_messages_legacy') IS NOT NULL THEN ALTER TABLE inbound_messages_legacy ADD COLUMN IF NOT EXISTS tenant_id text; END IF; END $$;
ALTER TABLE messages ADD COLUMN IF NOT EXISTS tenant_id text;
ALTER TABLE inbound_messages ADD COLUMN IF NOT EXISTS tenant_id text;
ALTER TABLE consent_history ADD COLUMN IF NOT EXISTS tenant_id text;
ALTER TABLE subscriptions ADD COLUMN IF NOT EXISTS tenant_id text;
-- The tenant of the callback key that brought a dead letter: its replay keeps it.
ALTER TABLE dead_letters ADD COLUMN IF NOT EXISTS tenant_id text;
-- An endpoint's owner (NULL: the operator's, which receives every tenant's events, or
-- those of filter_tenant).
ALTER TABLE endpoints ADD COLUMN IF NOT EXISTS tenant_id text REFERENCES tenants (id);
ALTER TABLE endpoints ADD COLUMN IF NOT EXISTS filter_tenant text[];

-- A subscription is per tenant: an all-senders opt-out (sender '*') a tenant received
-- must not bind another tenant's senders. The key gains tenant_id (NULL, no tenant,
-- is one value: NULLS NOT DISTINCT), and the old primary key goes.
-- A build that was interrupted leaves an invalid index: drop it (only then) and build again.
-- Workers of the previous version upsert on the old key and fail (their batches retry,
-- nothing is lost) until they restart: run this with this version's workers, as 010.
DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = 'subscriptions_tenant_key' AND NOT i.indisvalid) THEN DROP INDEX subscriptions_tenant_key; END IF; END $$;
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS subscriptions_tenant_key
    ON subscriptions (channel, sender, msisdn, category, tenant_id) NULLS NOT DISTINCT;
ALTER TABLE subscriptions DROP CONSTRAINT IF EXISTS subscriptions_pkey;

-- Tenant pages (newest first, one tenant's rows). A partitioned parent cannot build an
-- index CONCURRENTLY, so its index is made ON ONLY the parent (a catalogue entry, instant;
-- invalid until every partition has one): each partition made from now on gets its own
-- when it is attached (shared/db/partitions.py, on an empty table), and the default
-- partition builds its own here, CONCURRENTLY, attached after. The partitions that exist
-- already hold rows from before tenants (and the few days made ahead): their tenant pages
-- filter the id walk until retention drops them (docs/tenants.md).
CREATE INDEX IF NOT EXISTS events_tenant_id ON ONLY events (tenant_id, id)
    WHERE tenant_id IS NOT NULL;
DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = 'events_default_tenant_id' AND NOT i.indisvalid) THEN DROP INDEX events_default_tenant_id; END IF; END $$;
CREATE INDEX CONCURRENTLY IF NOT EXISTS events_default_tenant_id ON events_default (tenant_id, id)
    WHERE tenant_id IS NOT NULL;
ALTER INDEX events_tenant_id ATTACH PARTITION events_default_tenant_id;
CREATE INDEX IF NOT EXISTS inbound_messages_tenant_id ON ONLY inbound_messages
    (tenant_id, event_id) WHERE tenant_id IS NOT NULL;
DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = 'inbound_messages_default_tenant_id' AND NOT i.indisvalid) THEN DROP INDEX inbound_messages_default_tenant_id; END IF; END $$;
CREATE INDEX CONCURRENTLY IF NOT EXISTS inbound_messages_default_tenant_id
    ON inbound_messages_default (tenant_id, event_id) WHERE tenant_id IS NOT NULL;
ALTER INDEX inbound_messages_tenant_id ATTACH PARTITION inbound_messages_default_tenant_id;
CREATE INDEX CONCURRENTLY IF NOT EXISTS messages_tenant ON messages (tenant_id, last_event_at)
    WHERE tenant_id IS NOT NULL;
CREATE INDEX CONCURRENTLY IF NOT EXISTS subscriptions_tenant_id ON subscriptions (tenant_id, id)
    WHERE tenant_id IS NOT NULL;
CREATE INDEX CONCURRENTLY IF NOT EXISTS endpoints_tenant ON endpoints (tenant_id, id)
    WHERE tenant_id IS NOT NULL;
RESET lock_timeout;
