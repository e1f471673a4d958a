"""Consent rules that need no database: keywords, and what a consent event means.

An inbound text whose whole message, trimmed and case-insensitive, is an opt-in
or opt-out keyword is a consent request from any source. It stays a
``message.inbound`` event (it is still an inbound message); only its ``consent``
is set. "STOP please" is not a keyword. A word configured in both lists counts
as opt-out: when in doubt, stop sending.

A keyword can only be applied when the event names both the user (msisdn) and
whom they wrote to (sender): e.g. a Messenger "STOP" carries neither, so it stays
an ordinary inbound message.
"""

from __future__ import annotations

from collections.abc import Iterable

from shared.model import Consent, ConsentScope, EventType, NormalisedEvent

OPTED_IN = "opted_in"
OPTED_OUT = "opted_out"
STATUS: dict[Consent, str] = {Consent.OPT_IN: OPTED_IN, Consent.OPT_OUT: OPTED_OUT}
TRANSITION_TYPE: dict[str, str] = {
    OPTED_IN: EventType.SUBSCRIPTION_OPTED_IN.value,
    OPTED_OUT: EventType.SUBSCRIPTION_OPTED_OUT.value,
}
# Events that are consent requests and nothing else: they notify only through
# the transitions they cause. A keyword text is also a message, so it notifies
# as message.inbound too.
CONSENT_ONLY_TYPES = frozenset(TRANSITION_TYPE.values())
ALL_SENDERS = "*"


def keyword_consent(
    text: object, opt_in: Iterable[str], opt_out: Iterable[str]
) -> tuple[Consent, str] | None:
    """(consent, keyword) when the whole text is a keyword, else None."""
    if not isinstance(text, str):
        return None
    word = text.strip().upper()
    if not word:
        return None
    if word in {k.upper() for k in opt_out}:
        return Consent.OPT_OUT, word
    if word in {k.upper() for k in opt_in}:
        return Consent.OPT_IN, word
    return None


def apply_keywords(
    event: NormalisedEvent, opt_in: Iterable[str], opt_out: Iterable[str]
) -> bool:
    """Set ``event.consent`` when it is an inbound keyword text; True if it did."""
    if event.type != EventType.MESSAGE_INBOUND or event.consent is not None:
        return False
    if not event.msisdn or not event.sender:
        return False
    found = keyword_consent(event.data.get("text"), opt_in, opt_out)
    if found is None:
        return False
    event.consent, keyword = found
    event.consent_scope = ConsentScope.SENDER
    # Kept with the event, so the stored row says why it changed consent.
    event.data["consent_keyword"] = keyword
    return True


def notifies_as_itself(event: NormalisedEvent) -> bool:
    """False for SUBSCRIBE / UNSUBSCRIBE-like events: they notify through transitions."""
    return not (event.consent is not None and event.type in CONSENT_ONLY_TYPES)
