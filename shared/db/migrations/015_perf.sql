-- Claims that plan only the outbox partitions holding work (shared/db/outbox/claims.py).
--
-- A claim leaves out the range partitions that held no pending or failed delivery when
-- the claimer last looked, by literal bounds the planner prunes with; planning a claim
-- over every partition kept (40 with daily partitions) cost more than running it. This
-- guard, evaluated in the claim's own statement (so with its snapshot), says whether
-- any such delivery has appeared in the ranges left out since: then the claim is taken
-- again over fresh ranges, so nothing it would have seen is missed (ordering and caps
-- included). PL/pgSQL keeps its plan across calls, so the guard is not planned per
-- claim; each call prunes the partitions at run time.
CREATE FUNCTION outbox_unsettled_within(los timestamptz[], his timestamptz[])
RETURNS boolean LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN EXISTS (
        SELECT 1 FROM unnest(los, his) AS s(lo, hi)
        CROSS JOIN LATERAL (
            SELECT 1 FROM deliveries d
            WHERE d.status IN ('pending', 'failed')
              AND d.occurred_at >= s.lo AND d.occurred_at < s.hi
            LIMIT 1) d);
END $$;
