"""Dead letters: filter, read the raw body, replay one (as is or fixed) or a selection,
and see what became of a replay."""

from __future__ import annotations

from typing import Any

from flask import abort, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from ingest.console.blueprint import bp, rt
from ingest.console.forms import PAGE, integer, moment, one, text
from shared import replay as replays
from shared.db import dead_letters, events
from shared.db.paging import Page

# A selection replays at most this many per click (oldest first); click again for more.
MAX_SELECTION = 1000


def _filters() -> dict[str, Any]:
    return {"source": text("source"), "reason": text("reason"), "since": moment("since"),
            "until": moment("until")}


@bp.get("/dead-letters")
def dead_letter_list() -> str:
    f = _filters()
    with rt().pool.connection() as conn:
        rows = dead_letters.list_recent(conn, Page(PAGE, integer("before")), **f)
    nxt = rows[-1]["id"] if len(rows) == PAGE else None
    for r in rows:
        r["excerpt"] = bytes(r.pop("body")[:200]).decode("utf-8", errors="replace")
    return render_template("console/dead_letters.html", rows=rows, next_before=nxt,
                           args={k: request.args.get(k, "") for k in f},
                           max_selection=MAX_SELECTION)


def outcome(ingest_id: str | None) -> dict[str, Any] | None:
    """What the replay's callback became: events applied, another dead letter, or
    nothing yet (still queued)."""
    if ingest_id is None:
        return None
    with rt().pool.connection() as conn:
        applied = events.by_ingest_id(conn, ingest_id)
        again = dead_letters.by_ingest_id(conn, ingest_id)
    return {"ingest_id": ingest_id, "events": applied, "dead_letter": again}


@bp.get("/dead-letters/<int:letter_id>")
def dead_letter(letter_id: int) -> str:
    letter = one(lambda conn: dead_letters.get(conn, letter_id), "dead letter", letter_id)
    body = bytes(letter["body"]).decode("utf-8", errors="replace")
    return render_template("console/dead_letter.html", letter=letter, body=body,
                           outcome=outcome(letter["replay_ingest_id"]))


@bp.post("/dead-letters/<int:letter_id>/replay")
def dead_letter_replay(letter_id: int) -> Response:
    """As /v1: the stored body, or the edited one (a fixed copy) when one is sent."""
    edited = request.form.get("body")
    body = edited.replace("\r\n", "\n").encode() if edited is not None else None
    try:
        ingest_id = replays.replay(rt(), letter_id, body,
                                   force=request.form.get("force") == "1")
    except replays.AlreadyReplayed as exc:
        flash(f"{exc}: replay it again only if that one was lost", "error")
        return redirect(url_for("console.dead_letter", letter_id=letter_id))
    if ingest_id is None:
        abort(404, f"no dead letter {letter_id}")
    flash(f"replayed as {ingest_id}" + (" with the edited body" if body is not None else ""),
          "ok")
    return redirect(url_for("console.dead_letter", letter_id=letter_id))


@bp.post("/dead-letters/replay")
def dead_letter_replay_selection() -> Response:
    """The filtered selection, as `hookline replay` takes it (never those replayed)."""
    f = _filters()
    sel = replays.Selection(limit=MAX_SELECTION, **f)
    done = replays.replay_matching(rt(), sel)
    flash(f"replayed {done} dead letter(s)" + (
        f"; at most {MAX_SELECTION} at a time, replay again for more"
        if done == MAX_SELECTION else ""), "ok")
    args = {k: request.form.get(k) for k in f if request.form.get(k)}
    return redirect(url_for("console.dead_letter_list", **args))
