"""Whether the tables from before migration 010 are still there.

Asked by every event insert (shared.db.events), answered from memory once known;
the conversion that empties and drops them is shared.db.convert.
"""

from __future__ import annotations

import psycopg

_present: bool | None = None


def legacy_present(cur: psycopg.Cursor | psycopg.Connection) -> bool:
    """Whether events_legacy exists. Once migration 010 has run the answer can only go
    from yes to no (the table is dropped, never made again; a statement naming it after
    the drop fails with UndefinedTable, which forget() answers), so it is kept. Before
    010 (event_keys missing: a worker that started before `hookline migrate` finished)
    nothing is kept: 010 may be about to make the legacy tables."""
    global _present
    if _present is None:
        legacy, migrated = cur.execute(
            "SELECT to_regclass('events_legacy') IS NOT NULL, "
            "to_regclass('event_keys') IS NOT NULL").fetchone()
        if not migrated:
            return legacy
        _present = legacy
    return _present


def forget() -> None:
    """Read legacy_present again next time (the legacy tables were dropped)."""
    global _present
    _present = None
