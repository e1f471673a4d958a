"""Consent: may one sender message one number on one channel, and why; the
suppression list, filterable, and as a streamed CSV."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

from flask import Response, render_template, request, stream_with_context

from ingest import consent_api
from ingest.console.blueprint import bp, rt, scope
from ingest.console.forms import PAGE, integer, text
from shared.consent import OPTED_OUT
from shared.db import subscriptions
from shared.db.paging import Page, Party

CSV_PAGE = 1000
CSV_COLUMNS = ("channel", "sender", "msisdn", "category", "scope", "changed_at", "source",
               "event_id")


def _list_filters() -> dict[str, Any]:
    return {"channel": text("s_channel"), "sender": text("s_sender"),
            "msisdn": text("s_msisdn")}


@bp.get("/consent")
def consent() -> str:
    channel, sender, msisdn = text("channel"), text("sender"), text("msisdn")
    found = (consent_api.decision(channel, sender, msisdn)
             if channel and sender and msisdn else None)
    f = _list_filters()
    with rt().pool.connection() as conn:
        rows = subscriptions.list_page(conn, Page(PAGE, integer("before")), Party(**f),
                                       status=OPTED_OUT, tenant_id=scope())
    nxt = rows[-1]["id"] if len(rows) == PAGE else None
    return render_template("console/consent.html", found=found, rows=rows, next_before=nxt,
                           party={"channel": channel, "sender": sender, "msisdn": msisdn},
                           args={**{f"s_{k}": v or "" for k, v in f.items()},
                                 "tenant": request.args.get("tenant") or ""})


def _csv_rows(filters: dict[str, Any], tenant: str | None) -> Iterator[str]:
    """The whole list, page by page (keyset), each page a pooled connection held
    only while it is read."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    before = None
    while True:
        with rt().pool.connection() as conn:
            rows = subscriptions.list_page(conn, Page(CSV_PAGE, before), Party(**filters),
                                           status=OPTED_OUT, tenant_id=tenant)
        for r in rows:
            writer.writerow([_cell(r[c]) for c in CSV_COLUMNS])
        yield out.getvalue()
        out.seek(0)
        out.truncate()
        if len(rows) < CSV_PAGE:
            return
        before = rows[-1]["id"]


def _cell(value: Any) -> str:
    text_ = "" if value is None else (value.isoformat() if hasattr(value, "isoformat")
                                      else str(value))
    # A spreadsheet runs a cell that starts with = + - @ as a formula; a phone
    # number's leading + stays as it is.
    risky = text_[:1] in ("=", "@", "\t", "\r") or (
        text_[:1] in ("+", "-") and not text_[1:].replace(" ", "").isdigit())
    return "'" + text_ if risky else text_


@bp.get("/consent/suppression.csv")
def suppression_csv() -> Response:
    f = _list_filters()
    resp = Response(stream_with_context(_csv_rows(f, scope())), mimetype="text/csv")
    resp.headers["Content-Disposition"] = "attachment; filename=suppression-list.csv"
    return resp
