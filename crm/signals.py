"""The domain signals. Senders never import their listeners: consent does not know about email.

Each signal documents who sends it and with which keyword arguments. Listeners run inside the
sender's transaction; side effects outside the database must go through ``crm.db.on_commit``.
"""

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
