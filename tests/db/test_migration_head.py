"""The migration head file names the newest migration (GOV.UK Notify's
``.current-alembic-head``): two branches that each add a migration both change it,
so they conflict in git instead of merging two files with one number."""

from __future__ import annotations

from collections import Counter

from shared.db.migrate import head, migration_files


def test_head_names_the_newest_migration() -> None:
    versions = [v for v, _ in migration_files()]
    assert head() == versions[-1], (
        "shared/db/migrations/.head must name the newest migration; after a merge, "
        "renumber your migration to follow the other branch's and update .head")


def test_each_migration_number_is_used_once() -> None:
    numbers = Counter(v.split("_", 1)[0] for v, _ in migration_files())
    assert [n for n, count in numbers.items() if count > 1] == []
