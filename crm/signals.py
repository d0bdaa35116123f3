"""The domain signals. Senders never import their listeners: consent does not know about email.

Each signal documents who sends it and with which keyword arguments. Listeners run inside the
sender's transaction; side effects outside the database must go through ``crm.db.on_commit``.
"""

from collections.abc import Callable
from typing import Any

from blinker import Namespace

_signals = Namespace()

interaction_recorded = _signals.signal(
    "interaction-recorded",
    doc="""Sent by ``crm.timeline.services.record_interaction`` after a new interaction is flushed.

    :param sender: the ``Interaction``
    :param actor: the ``User`` who recorded it, or ``None`` for an outside system
    :param created: ``False`` when the call was an idempotent replay of an existing item
    """,
)

# receiver id -> which items it needs: ``wants(channel, kind)``; see ``listen_to_interactions``
_interaction_interests: dict[Any, Callable[[str, str], bool]] = {}


def listen_to_interactions(receiver: Callable[..., Any], *, wants: Callable[[str, str], bool]) -> None:
    """Connect ``receiver`` to ``interaction_recorded``, saying which items it needs (``wants(channel,
    kind)``). A batch writer (``record_interactions``) loads and announces only items that some receiver
    wants; a receiver connected with plain ``connect`` wants every item. A receiver still gets every
    item that is announced, so it keeps its own checks."""
    interaction_recorded.connect(receiver)
    _interaction_interests[id(receiver)] = wants


def interaction_wanted(channel: str, kind: str) -> bool:
    """Does any receiver of ``interaction_recorded`` need to hear of an item of this channel and kind?"""
    for key in interaction_recorded.receivers:
        wants = _interaction_interests.get(key)
        if wants is None or wants(channel, kind):  # undeclared receivers want everything
            return True
    return False


visit_submitted = _signals.signal(
    "visit-submitted",
    doc="""Sent by ``crm.visits.services.submit_visit`` once a visit is locked and on the timeline.

    :param sender: the ``Visit``
    :param actor: the submitting ``User``
    """,
)

hcp_changed = _signals.signal(
    "hcp-changed",
    doc="""Sent by ``crm.hcps.services`` after an HCP is created or updated.

    :param sender: the ``HCP``
    :param actor: the ``User`` (or ``None`` for an import)
    :param changed: the set of changed field names
    """,
)

consent_changed = _signals.signal(
    "consent-changed",
    doc="""Sent by ``crm.consent.services`` after a ledger event is appended and the state rebuilt.

    :param sender: the ``ConsentEvent``
    :param session: the SQLAlchemy session (its transaction is still open)
    :param actor: the ``User`` who captured it, or ``None`` (the HCP via a link, an outside system)
    """,
)

consent_changed_many = _signals.signal(
    "consent-changed-many",
    doc="""Sent by ``crm.consent.services.withdraw_many`` once for a batch of ledger events appended
    together (the email platform's unsubscribes of one webhook batch), after the states were rebuilt;
    such events do not also send ``consent_changed`` one by one, so that a receiver can do its work for
    the whole batch in a few statements.

    :param sender: the list of new ``ConsentEvent`` rows (read-only column tuples: ``id``, ``hcp_id``,
        ``channel``, ``purpose``, ``event_type``, ``occurred_at``)
    :param session: the SQLAlchemy session (its transaction is still open)
    :param actor: the ``User`` who captured them, or ``None`` (an outside system)
    """,
)

consent_confirmation_requested = _signals.signal(
    "consent-confirmation-requested",
    doc="""Sent by ``crm.consent.services.grant_consent`` when a double opt-in is needed: a confirmation
    mail (no advertising) must reach the HCP, after the commit. The email adapter listens.

    :param sender: the ``requested`` ``ConsentEvent``
    :param session: the SQLAlchemy session (mail is handed over with ``crm.db.on_commit``)
    :param to: the HCP's email address
    :param name: the HCP's name for the greeting
    :param confirm_url: the signed single-use confirmation link
    :param preferences_url: the HCP's preference-centre link
    :param channel: the consent channel being confirmed
    :param purpose: the consent purpose being confirmed
    """,
)

unsubscribed_by_link = _signals.signal(
    "unsubscribed-by-link",
    doc="""Sent by ``crm.consent.services.unsubscribe`` after an HCP unsubscribed through the CRM's own link
    (a POST: the page's button or an RFC 8058 one-click). Campaigns listen, to count it in the funnel of
    the campaign whose mail carried the link.

    :param sender: the ``withdrawn`` ``ConsentEvent``
    :param session: the SQLAlchemy session (its transaction is still open)
    :param hcp_id: the HCP who unsubscribed (the record that took the withdrawal)
    :param reference: what sent the link, e.g. ``campaign:12`` or ``event-invitation:3`` (may be ``None``)
    """,
)

data_export_requested = _signals.signal(
    "data-export-requested",
    doc="""Sent by ``crm.consent.services.request_data_export`` when an HCP asked, from the preference
    centre, for a copy of their data: a mail with a short-lived, single-use download link must reach the
    address on file, after the commit. The email adapter listens.

    :param sender: the HCP's id
    :param session: the SQLAlchemy session (mail is handed over with ``crm.db.on_commit``)
    :param to: the HCP's email address on file
    :param name: the HCP's name for the greeting
    :param download_url: the signed single-use link to the download page
    :param expires_at: when the link stops working (UTC)
    """,
)
