"""The delivery outbox: written with the events, claimed by senders, recorded per attempt.

One module per caller:

* ``enqueue`` runs inside the apply transaction: one row per (event, endpoint,
  notification type), so an applied event cannot miss its deliveries and a
  re-applied one cannot make a second set (unique constraint).
* ``claims`` takes due deliveries with ``FOR UPDATE SKIP LOCKED``, honouring each
  endpoint's concurrency cap, breaker and ordering, and leases them by moving
  ``next_attempt_at`` to the end of the lease: a sender that dies lets them fall
  due again (at-least-once).
* ``attempts`` stores the attempts and moves each delivery on (succeeded, failed
  with its next attempt on the schedule, or dead) -- only if the recorder still
  holds the claim.
* ``admin`` answers the API and the console, and queues deliveries again.
* ``ordering`` is the only one that knows how held deliveries work: an ordered
  endpoint's delivery waits *held* (``next_attempt_at`` NULL, never due) while an
  earlier one of its message is pending; whatever settles or requeues one lets the
  first pending one of its message go, in the same transaction.
"""
