-- Ordered endpoints: a delivery waiting behind an earlier one of its message is
-- held (next_attempt_at NULL, never due) and let go when that one settles
-- (shared.db.deliveries). Before, every follower was due and each claim walked all
-- of them under the claim lock (330 ms with 60,000 waiting; docs/benchmarks.md).
-- This holds the followers already written: only rows that have an earlier
-- pending delivery of their message, so each message's first stays as it was, and
-- none in flight. Re-runnable (a held row is left alone).
--
-- Run it with this version's workers (or none): an older worker that settles a
-- message's first delivery does not let the next go, which would then wait.
--
-- One statement: it locks only the followers, which nobody else writes (claims
-- skip them, drains insert, records touch what was claimed). The order locks of
-- the ordered endpoints are taken first, so no settle of this version interleaves.
-- Better to fail (run it again) than to wait long on a row lock.
SET LOCAL lock_timeout = '5s';
SELECT count(pg_advisory_xact_lock(1752133484, s.k))  -- deliveries._ORDER_LOCK
FROM (SELECT DISTINCT hashtext(id) AS k FROM endpoints WHERE ordered ORDER BY 1) s;
UPDATE deliveries d SET next_attempt_at = NULL
FROM endpoints e
WHERE e.id = d.endpoint_id AND e.ordered
  AND d.status IN ('pending', 'failed') AND d.message_key IS NOT NULL
  AND d.next_attempt_at IS NOT NULL
  AND NOT (d.claim_token IS NOT NULL AND d.next_attempt_at > now())
  AND EXISTS (
      SELECT 1 FROM deliveries p
      WHERE p.endpoint_id = d.endpoint_id AND p.message_key = d.message_key
        AND p.status IN ('pending', 'failed')
        AND (p.occurred_at, p.rank, p.seq) < (d.occurred_at, d.rank, d.seq));
