-- A message known by more than one id: Kaleyra's WhatsApp API V2 names a message by
-- Meta's wamid on every callback and by its own id on some. The message is stored
-- under the wamid; each other id it is known by points at it, so /v1 finds it by
-- either. An alias is never reassigned: the first mapping seen stays.
CREATE TABLE message_aliases (
    source     text NOT NULL,
    alias      text NOT NULL,
    message_id text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    -- Alias first: /v1/messages/<id> looks an id up without its source.
    PRIMARY KEY (alias, source)
);
