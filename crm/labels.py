"""Codes to the words people read: one mapping for interaction kinds, channels, roles and other codes.

Code, API and exports keep the glossary's codes (``visit.submitted``, ``field_rep``); pages show these
labels through the ``label`` Jinja filter (``{{ item.kind|label }}``, ``{{ user.role|label('role') }}``).
An unknown code still reads as words (``call_centre.complaint`` -> "Call centre: complaint"), never as a
code. Rule ids are not labelled: pages show the rule's reason and keep the id in a ``title`` tooltip.
"""

from __future__ import annotations

from typing import Any

from crm.access.policy import ROLE_LABELS

CHANNELS = {
    "visit": "Visit",
    "email": "Email",
    "event": "Event",
    "call_centre": "Call centre",
    "order": "Order",
    "survey": "Survey",
    "consent": "Consent",
}

KINDS = {
    "visit.submitted": "Visit",
    "visit.amended": "Visit (amended)",
    "email.sent": "Email sent",
    "email.delivered": "Email delivered",
    "email.deferred": "Email delayed by the recipient's server",
    "email.opened": "Email opened",
    "email.clicked": "Link in an email clicked",
    "email.bounced": "Email bounced",
    "email.dropped": "Email not delivered (dropped)",
    "email.spamreport": "Email reported as spam",
    "email.unsubscribed": "Unsubscribed from emails",
    "event.invited": "Invited to an event",
    "event.registered": "Registered for an event",
    "event.attended": "Attended an event",
    "event.no_show": "Did not attend an event",
    "call_centre.product_information": "Call centre: product information",
    "call_centre.medical_inquiry": "Call centre: medical inquiry",
    "call_centre.adverse_event": "Call centre: adverse event",
    "call_centre.complaint": "Call centre: complaint",
    "call_centre.sample_request": "Call centre: sample request",
    "call_centre.other": "Call centre: other contact",
    "call_centre.medical_answer": "Answer to a medical inquiry",
    "order.draft": "Order drafted",
    "order.queued": "Order placed",
    "order.sent": "Order sent to the ERP",
    "order.accepted": "Order accepted",
    "order.rejected": "Order rejected",
    "order.backordered": "Order backordered",
    "order.shipped": "Order shipped",
    "survey.sent": "Survey sent",
    "survey.answered": "Survey answered",
    "consent.requested": "Consent requested",
    "consent.granted": "Consent granted",
    "consent.confirmed": "Consent confirmed",
    "consent.withdrawn": "Consent withdrawn",
    "consent.expired": "Consent expired",
}

ROLES = dict(ROLE_LABELS)

PROFESSIONS = {
    "gp": "General practitioner",
    "specialist": "Specialist",
    "pharmacist": "Pharmacist",
    "nurse": "Nurse",
    "other": "Other profession",
}

SENSITIVITIES = {"standard": "Standard", "medical": "Medical", "pv": "Pharmacovigilance"}

LEVELS = {
    "full": "everything",
    "summary": "a safe summary",
    "existence": "that it happened, not its content",
    "hidden": "nothing",
}

SOURCES = {
    "crm": "typed in here",
    "esp": "the email platform",
    "event_platform": "the event platform",
    "call_centre_system": "the call-centre system",
    "erp": "the ERP",
    "import": "an import",
    "visit": "a visit",
    "web_form": "a web form",
    "email_link": "a link in an email",
    "call_centre": "the call centre",
    "paper_form": "a paper form",
}

GROUPS: dict[str, dict[str, str]] = {
    "kind": KINDS,
    "channel": CHANNELS,
    "role": ROLES,
    "sensitivity": SENSITIVITIES,
    "profession": PROFESSIONS,
    "level": LEVELS,
    "source": SOURCES,
}


def _words(code: str) -> str:
    text = code.replace("_", " ").strip()
    return text[:1].upper() + text[1:]


def label(code: Any, group: str | None = None) -> str:
    """The words for ``code``: looked up in ``group`` ("kind", "role", ...), or in every group when
    none is named; an unknown ``channel.sub_type`` reads "Channel: sub type", anything else its words."""
    if code is None:
        return ""
    text = str(code)
    if group:
        tables = [GROUPS[group]] if group in GROUPS else []  # e.g. "action": words only
    else:
        tables = list(GROUPS.values())
    for table in tables:
        if text in table:
            return table[text]
    channel, dot, rest = text.partition(".")
    if dot and channel in CHANNELS and rest:
        return f"{CHANNELS[channel]}: {rest.replace('_', ' ').replace('.', ' ')}"
    if dot and rest:  # an audit action such as ``user.password.set``: "User: password set"
        return f"{_words(channel)}: {rest.replace('_', ' ').replace('.', ' ')}"
    return _words(text)


def actor(stored: Any) -> str:
    """A stored actor label ("Name <role_code>", as audit records keep it) as people read it:
    "Name (Role)"; anything else unchanged."""
    text = "" if stored is None else str(stored)
    name, lt, rest = text.rpartition(" <")
    if lt and rest.endswith(">") and rest[:-1] in ROLES:
        return f"{name} ({label(rest[:-1], 'role')})"
    return text


def register_labels(app: Any) -> None:
    """The ``label`` and ``actor`` Jinja filters."""
    app.jinja_env.filters["label"] = label
    app.jinja_env.filters["actor"] = actor
