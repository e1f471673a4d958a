-- The spine: received events, per-message delivery status, its history, dead letters.

CREATE TABLE events (
    id                bigserial PRIMARY KEY,
    source            text        NOT NULL,
    -- eventId, else messageId + kind, else a body hash: unique per source, so a
    -- duplicate callback conflicts here and has no effect.
    dedupe_key        text        NOT NULL,
    type              text        NOT NULL,
    channel           text        NOT NULL,
    message_id        text,
    sender            text,
    msisdn            text,
    status            text,
    provider_status   text,
    provider_event_id text,
    occurred_at       timestamptz NOT NULL,
    ingest_id         text        NOT NULL,
    data              jsonb       NOT NULL DEFAULT '{}'::jsonb,
    raw               jsonb,
    received_at       timestamptz NOT NULL,
    processed_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT events_source_dedupe_key UNIQUE (source, dedupe_key)
);
CREATE INDEX events_message ON events (source, message_id) WHERE message_id IS NOT NULL;
CREATE INDEX events_type_id ON events (type, id);
CREATE INDEX events_ingest_id ON events (ingest_id);
CREATE INDEX events_received_at ON events (received_at);

CREATE TABLE messages (
    source        text        NOT NULL,
    message_id    text        NOT NULL,
    channel       text        NOT NULL,
    sender        text,
    msisdn        text,
    status        text        NOT NULL,
    status_rank   smallint    NOT NULL,
    -- The earliest occurred_at of each status, whatever the order of arrival.
    unknown_at    timestamptz,
    sent_at       timestamptz,
    expired_at    timestamptz,
    failed_at     timestamptz,
    delivered_at  timestamptz,
    read_at       timestamptz,
    deleted_at    timestamptz,
    last_event_at timestamptz NOT NULL,
    PRIMARY KEY (source, message_id)
);

CREATE TABLE message_status_history (
    id              bigserial PRIMARY KEY,
    event_id        bigint      NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    source          text        NOT NULL,
    message_id      text        NOT NULL,
    status          text        NOT NULL,
    provider_status text,
    occurred_at     timestamptz NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX message_status_history_message ON message_status_history (source, message_id);

CREATE TABLE dead_letters (
    id               bigserial PRIMARY KEY,
    -- One dead letter per received callback, however often its batch is retried.
    ingest_id        text        NOT NULL UNIQUE,
    source           text        NOT NULL,
    event            text,
    reason           text        NOT NULL,
    body             bytea       NOT NULL,
    headers          jsonb       NOT NULL DEFAULT '{}'::jsonb,
    remote_addr      text,
    attempts         integer     NOT NULL DEFAULT 1,
    received_at      timestamptz NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    replayed_at      timestamptz,
    replay_ingest_id text
);
CREATE INDEX dead_letters_created ON dead_letters (created_at DESC);
CREATE INDEX dead_letters_source ON dead_letters (source, created_at DESC);
