"""What no format reads stays a dead letter that names what it saw (its top-level
keys) and what the source's formats need; after an upgrade, a replay by reason
applies it."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from shared import replay
from shared.db import dead_letters
from shared.db.dead_letters import DeadLetter
from shared.providers import UnsupportedEvent, parse
from tests.helpers import FIXTURES, drain_all


@pytest.mark.parametrize(("source", "doc", "saw", "needed"), [
    ("kaleyra-rcs", {"type": "BOGUS", "from": "1"}, "top-level keys [from, type]",
     "kaleyra-rcs-receipt: \"type\" SENT|DELIVERED"),
    ("comapi", {"hello": 1, "world": 2}, "object with top-level keys [hello, world]",
     "comapi-message-event: \"name\" one of"),
])
def test_an_unknown_shape_names_its_keys_and_what_was_needed(source, doc, saw, needed):
    with pytest.raises(UnsupportedEvent) as err:
        parse(source, None, doc)
    assert saw in err.value.reason and needed in err.value.reason


def test_a_dead_letter_from_before_the_upgrade_is_applied_by_a_replay_by_reason(rt):
    """The reason today's main branch gave every Kaleyra.io WhatsApp V2 callback."""
    body = (FIXTURES / "kaleyra-io" / "whatsapp_v2__status_delivered.json").read_bytes()
    old = DeadLetter(ingest_id="before-upgrade-1", source="kaleyra-io", event=None,
                     reason="kaleyra-io whatsapp:message:status payload: id: Missing data "
                            "for required field.", body=body,
                     headers={"content-type": "application/json"}, remote_addr=None,
                     received_at=datetime.now(UTC))
    with rt.pool.connection() as conn, conn.cursor() as cur:
        dead_letters.insert(cur, [old])
    assert replay.replay_matching(rt, replay.Selection(reason="id: Missing data")) == 1
    drain_all(rt)
    with rt.pool.connection() as conn:
        (status,) = conn.execute("SELECT status FROM messages").fetchone()
        letters = conn.execute("SELECT count(*) FROM dead_letters "
                               "WHERE replayed_at IS NULL").fetchone()[0]
    assert status == "delivered" and letters == 0
    assert orjson.loads(body)["meta_object"]["field"] == "messages"
