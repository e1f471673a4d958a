-- Consent (subscriptions and their history) and inbound messages.
--
-- Consent rows are the compliance record: they reference events by id without
-- a foreign key, so retention (which deletes old events) never removes them,
-- and they keep the facts they need (source, occurred_at, keyword) themselves.

CREATE TABLE subscriptions (
    id          bigint      GENERATED ALWAYS AS IDENTITY UNIQUE,
    channel     text        NOT NULL,
    -- The agent / service code / sender id; '*' is every sender on the channel
    -- (a Kaleyra.io unsubscription of type all, and category records).
    sender      text        NOT NULL,
    msisdn      text        NOT NULL,
    -- '' for the subscription itself; a category name for a category record.
    category    text        NOT NULL DEFAULT '',
    status      text        NOT NULL CHECK (status IN ('opted_in', 'opted_out')),
    scope       text        NOT NULL CHECK (scope IN ('sender', 'all', 'category')),
    -- The winning consent event: the latest occurred_at, opt-out on a tie, then
    -- event_key, so the row is the same whatever order events were applied in.
    changed_at  timestamptz NOT NULL,
    event_id    bigint      NOT NULL,
    source      text        NOT NULL,
    event_key   text        NOT NULL,  -- source || ' ' || dedupe_key: the last tie-break
    PRIMARY KEY (channel, sender, msisdn, category)
);
CREATE INDEX subscriptions_status ON subscriptions (status, channel, id);
CREATE INDEX subscriptions_msisdn ON subscriptions (msisdn, channel);

CREATE TABLE consent_history (
    id                bigserial   PRIMARY KEY,
    event_id          bigint      NOT NULL,
    source            text        NOT NULL,
    event_key         text        NOT NULL,
    event_type        text        NOT NULL,
    provider_event_id text,
    channel           text        NOT NULL,
    sender            text        NOT NULL,
    msisdn            text        NOT NULL,
    category          text        NOT NULL DEFAULT '',
    scope             text        NOT NULL,
    status            text        NOT NULL CHECK (status IN ('opted_in', 'opted_out')),
    occurred_at       timestamptz NOT NULL,
    -- The inbound text that was an opt-in / opt-out keyword, when that is why.
    keyword           text,
    -- Whether applying it changed the subscription's status (depends on arrival order).
    transition        boolean     NOT NULL,
    recorded_at       timestamptz NOT NULL DEFAULT now()
);
-- The applying transaction reads a key's latest entry (the state before its batch).
CREATE INDEX consent_history_key
    ON consent_history (channel, sender, msisdn, category, occurred_at DESC);
CREATE INDEX consent_history_msisdn ON consent_history (msisdn, channel);

CREATE TABLE inbound_messages (
    event_id    bigint      PRIMARY KEY REFERENCES events (id) ON DELETE CASCADE,
    source      text        NOT NULL,
    channel     text        NOT NULL,
    sender      text,
    msisdn      text,
    message_id  text,
    occurred_at timestamptz NOT NULL,
    text        text,
    response    jsonb,      -- {text, postback_data, type, mo_type}
    location    jsonb,      -- {latitude, longitude}
    media       jsonb,      -- [{url, type, caption, filename}]
    carrier_id  text,
    data        jsonb       NOT NULL DEFAULT '{}'::jsonb  -- everything else the event carried
);
CREATE INDEX inbound_messages_msisdn ON inbound_messages (msisdn, event_id);
CREATE INDEX inbound_messages_sender ON inbound_messages (channel, sender, event_id);
