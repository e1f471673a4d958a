-- Retention deletes old events in batches; the cascade to their status history
-- looks rows up by event_id, which must not be a scan of the whole table per event.
CREATE INDEX IF NOT EXISTS message_status_history_event ON message_status_history (event_id);
-- Replayed dead letters are purged by replayed_at.
CREATE INDEX IF NOT EXISTS dead_letters_replayed ON dead_letters (replayed_at)
    WHERE replayed_at IS NOT NULL;
