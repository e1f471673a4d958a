"""Per-transaction settings the outbox's hot statements take (set_config(..., true))."""

# Claims and attempt records need not wait for the WAL flush: if PostgreSQL
# crashes and loses the last of them, a lost claim lets the delivery be claimed
# again and a lost record leaves its claim to expire -- either way the delivery
# is sent again, which at-least-once delivery allows (receivers dedupe on
# webhook-id). It takes the fsync off the hot path of every claim and record.
ASYNC_COMMIT = "set_config('synchronous_commit', 'off', true)"
# Every claim and record leaves dead index entries behind (the outbox is a queue:
# each delivery is rewritten twice). A plain index scan marks those it passes as
# dead, so the next claim skips them; a bitmap scan, which the planner picks for
# the claim's in-flight count, visits each again until vacuum runs: claims grew
# from 15 to 30 ms within 45,000 deliveries (docs/benchmarks.md).
NO_BITMAP = "set_config('enable_bitmapscan', 'off', true)"
