"""The /v1 consent, inbound and event queries (same bearer token as ingest.api).

``may_send`` is false when the msisdn opted out of this sender or of every
sender on the channel (a Kaleyra.io ``all`` unsubscription); category records
are listed but do not decide it, since a message's category is not known here.
``status`` is this sender's own subscription (``unknown`` when there is none).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify

from ingest import api, auth, consent_openapi, openapi  # noqa: F401  (registers the route docs)
from ingest.auth import require_api_token
from shared.consent import ALL_SENDERS, OPTED_OUT
from shared.db import event_feed, inbound, subscriptions
from shared.db.paging import Party

bp = Blueprint("consent_api", __name__, url_prefix="/v1")
bp.before_request(require_api_token)
bp.before_request(openapi.validate_request)


def _party() -> Party:
    q = api.args()
    return Party(q.get("channel"), q.get("sender"), q.get("msisdn"))


def _blocked_by(own: dict | None, every: dict | None) -> list[str]:
    """The scope whose consent decides, if it is an opt-out. The newer of the
    sender's row and the all-senders row decides (an opt-out on a tie): a START to
    one sender after a STOP to all re-opens that sender, and only that one, as the
    opted_in notification it sent says."""
    rows = [(row["changed_at"], row["status"] != OPTED_OUT, scope)
            for scope, row in (("sender", own), ("all", every)) if row is not None]
    if not rows:
        return []
    _, opted_in, scope = max(rows, key=lambda r: (r[0], not r[1]))
    return [] if opted_in else [scope]


@bp.get("/subscriptions/<channel>/<sender>/<msisdn>")
def get_subscription(channel: str, sender: str, msisdn: str) -> Response:
    """Whether sender may message msisdn on channel, and the consent history behind it."""
    return jsonify(decision(channel, sender, msisdn))


def decision(channel: str, sender: str, msisdn: str) -> dict[str, Any]:
    """may_send, why not (blocked_by), and the rows and history behind it (the console
    shows the same)."""
    with api.rt().pool.connection() as conn:
        found = subscriptions.status_of(conn, channel, sender, msisdn, auth.tenant())
    own, every = found["sender"], found["all"]
    # Asked about sender '*' itself, its own row is the all-senders row.
    blocked_by = _blocked_by(own, every) if sender != ALL_SENDERS else _blocked_by(None, every)
    return dict(
        channel=channel, sender=sender, msisdn=msisdn,
        status=own["status"] if own else "unknown",
        may_send=not blocked_by,
        blocked_by=blocked_by,
        changed_at=own["changed_at"] if own else None,
        subscription=own, all_senders=every, categories=found["categories"],
        history=found["history"],
    )


@bp.get("/subscriptions")
def list_subscriptions() -> Response:
    """Subscriptions, newest first; with ?status=opted_out the suppression list."""
    return api.newest_first("id", lambda conn, page: subscriptions.list_page(
        conn, page, _party(), status=api.args().get("status"), tenant_id=auth.tenant()))


@bp.get("/inbound")
def list_inbound() -> Response:
    """Inbound messages (text, response, location, media), newest first."""
    return api.newest_first("event_id", lambda conn, page: inbound.list_page(
        conn, page, _party(), source=api.args().get("source"), tenant_id=auth.tenant()))


@bp.get("/events")
def list_events() -> Response:
    """Normalised events, newest first; ?since= bounds the receipt time."""
    return api.newest_first("id", lambda conn, page: event_feed.list_page(
        conn, page, type_=api.args().get("type"), source=api.args().get("source"),
        since=api.args().get("since"), tenant_id=auth.tenant()))
