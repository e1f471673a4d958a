-- Fan-out: customer endpoints, the delivery outbox, and every attempt made.

CREATE TABLE endpoints (
    id                         text        PRIMARY KEY,
    url                        text        NOT NULL,
    description                text,
    -- Normalised event type names, or '*' for all of them.
    event_types                text[]      NOT NULL CHECK (cardinality(event_types) > 0),
    -- NULL matches anything; otherwise the event's value must be one of these.
    filter_source              text[],
    filter_channel             text[],
    filter_sender              text[],
    ordered                    boolean     NOT NULL DEFAULT false,
    enabled                    boolean     NOT NULL DEFAULT true,
    disabled_reason            text,
    disabled_at                timestamptz,
    -- Standard Webhooks secrets (whsec_...). The previous one keeps signing
    -- beside the new one until it expires, so receivers can roll over.
    secret                     text        NOT NULL,
    previous_secret            text,
    previous_secret_expires_at timestamptz,
    -- Health: the circuit breaker and the "failing for N days" rule read these.
    consecutive_failures       integer     NOT NULL DEFAULT 0,
    failing_since              timestamptz,
    paused_until               timestamptz,
    last_success_at            timestamptz,
    last_failure_at            timestamptz,
    created_at                 timestamptz NOT NULL DEFAULT now(),
    updated_at                 timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE deliveries (
    -- The webhook-id: stable across retries, so receivers can deduplicate.
    -- Time-ordered hex after the prefix, random after that.
    id               text        PRIMARY KEY DEFAULT (
        'msg_' || lpad(to_hex((extract(epoch FROM clock_timestamp()) * 1000)::bigint), 12, '0')
        || substr(replace(gen_random_uuid()::text, '-', ''), 1, 16)),
    -- Insertion order: ordering ties and keyset paging (through the endpoint indexes).
    seq              bigint      GENERATED ALWAYS AS IDENTITY,
    endpoint_id      text        NOT NULL REFERENCES endpoints (id) ON DELETE CASCADE,
    event_id         bigint      NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    type             text        NOT NULL,
    -- The exact body sent (its jsonb text form, identical on every attempt).
    payload          jsonb       NOT NULL,
    -- source + message id: what "ordered" endpoints keep in occurred_at order.
    message_key      text,
    occurred_at      timestamptz NOT NULL,
    -- pending: not attempted yet (or queued again); failed: the last attempt
    -- failed and another is scheduled; succeeded; dead: the schedule ran out.
    status           text        NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'succeeded', 'failed', 'dead')),
    attempts         integer     NOT NULL DEFAULT 0,  -- every attempt ever made
    round_attempts   integer     NOT NULL DEFAULT 0,  -- since last queued; drives the schedule
    -- When due. While a sender holds the delivery (claim_token set) this is the
    -- end of its claim lease: a sender that died lets it fall due again.
    next_attempt_at  timestamptz,
    claim_token      uuid,
    created_at       timestamptz NOT NULL DEFAULT now(),
    last_attempt_at  timestamptz,
    last_status_code integer,
    last_error       text,
    requeued_at      timestamptz,
    -- Re-applying an event (or its consent transition) cannot make a second delivery.
    CONSTRAINT deliveries_once UNIQUE (event_id, endpoint_id, type)
);
CREATE INDEX deliveries_due ON deliveries (endpoint_id, next_attempt_at)
    WHERE status IN ('pending', 'failed');
CREATE INDEX deliveries_in_flight ON deliveries (endpoint_id) WHERE claim_token IS NOT NULL;
CREATE INDEX deliveries_order ON deliveries (endpoint_id, message_key, occurred_at, seq)
    WHERE status IN ('pending', 'failed') AND message_key IS NOT NULL;
CREATE INDEX deliveries_endpoint_seq ON deliveries (endpoint_id, seq);
CREATE INDEX deliveries_endpoint_status_seq ON deliveries (endpoint_id, status, seq);
CREATE INDEX deliveries_endpoint_created ON deliveries (endpoint_id, created_at);

CREATE TABLE delivery_attempts (
    id            bigserial   PRIMARY KEY,
    delivery_id   text        NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    attempted_at  timestamptz NOT NULL,
    duration_ms   integer     NOT NULL,
    status_code   integer,
    response_body text,       -- the first 4 KB
    error         text
);
CREATE INDEX delivery_attempts_delivery ON delivery_attempts (delivery_id, id);
