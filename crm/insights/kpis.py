"""The ONE registry of KPI definitions, and what counts as a touch per channel for engagement plans.

Every KPI the product shows (plans, the campaign funnel, contact fatigue, consent coverage) is defined
here once: its key, name, definition, unit and how it is counted. The glossary page (``/glossary``) is
generated from this module, and every screen that shows a KPI links to ``/glossary#kpi-<key>``. A new
KPI is added here first; ``tests/test_glossary.py`` checks that each has a definition and an anchor.
"""

from __future__ import annotations

from dataclasses import dataclass

from crm.callcentre.models import REASONS


@dataclass(frozen=True)
class Touch:
    """What counts as one touch on one channel for an engagement plan's attainment."""

    channel: str
    label: str
    kinds: tuple[str, ...]
    counted: str


# The touch-counting table (issue 12): one row per plan channel. A touch is one timeline item of one of
# these kinds for one HCP (an item with several participants is a touch for each). An item that was
# corrected (superseded) counts once, through its latest correction; restricted items (medical, pv)
# count like any other, and their content is never shown by the counts.
TOUCHES: tuple[Touch, ...] = (
    Touch("visit", "Visits", ("visit.submitted",),
          "Submitted visits (drafts do not count; an amended visit counts once, as its latest version)"),
    Touch("email", "Emails", ("email.delivered",),
          "Emails the email platform reported delivered (sent but not delivered, bounces and opens do not count)"),
    Touch("event", "Events", ("event.attended",),
          "Events attended (invitations, registrations and no-shows do not count)"),
    Touch("call_centre", "Call centre", tuple(f"call_centre.{reason}" for reason in REASONS),
          "Call-centre contacts, whatever the reason (Medical Affairs' written answer to an inquiry is not a "
          "second contact)"),
    Touch("survey", "Surveys", ("survey.answered",), "Survey answers the HCP gave"),
)
PLAN_CHANNELS: tuple[str, ...] = tuple(t.channel for t in TOUCHES)
TOUCH_BY_CHANNEL: dict[str, Touch] = {t.channel: t for t in TOUCHES}
CHANNEL_LABELS: dict[str, str] = {t.channel: t.label for t in TOUCHES}


@dataclass(frozen=True)
class Kpi:
    key: str
    name: str
    definition: str
    unit: str
    counted: str

    @property
    def anchor(self) -> str:
        return f"kpi-{self.key.replace('_', '-')}"


KPIS: tuple[Kpi, ...] = (
    # engagement plans
    Kpi("planned_touches", "Planned touches",
        "How many touches an engagement plan asks for in its cycle.", "touches",
        "For every HCP on the plan and every channel: the HCP's own goal on the target list, else the plan's "
        "goal per HCP for that channel; summed."),
    Kpi("touches", "Touches",
        "Contacts that happened in the plan's cycle with HCPs on the plan, counted per the touch table.",
        "touches", "Timeline items of the kinds in the touch table, one per HCP taking part, between the cycle's "
                   "first and last day (inclusive, UTC); a corrected item counts once."),
    Kpi("attainment", "Attainment",
        "How much of the plan happened: touches that met a goal, as a share of the planned touches.", "%",
        "Per HCP and channel the touches up to the goal (touches beyond an HCP's goal do not make up for "
        "another HCP left behind), summed, divided by the planned touches."),
    Kpi("reach", "Reach",
        "How many distinct HCPs were touched at least once.", "HCPs",
        "Distinct HCPs on the plan with at least one touch in the cycle (per channel, or on any channel)."),
    Kpi("reach_rate", "Reach rate",
        "Reached HCPs as a share of the HCPs on the plan.", "%", "Reach divided by the HCPs on the plan."),
    Kpi("frequency", "Frequency",
        "How often a reached HCP was touched, on average.", "touches per HCP",
        "Touches divided by reach (0 when nobody was reached)."),
    Kpi("behind_plan", "Behind plan",
        "HCPs whose touches lag the time gone by in the cycle.", "HCPs",
        "An HCP is behind when the touches that met a goal are fewer than the touches due by now: the HCP's "
        "planned touches times the share of the cycle that has passed, rounded down (a goal of 2 in a quarter "
        "expects the first touch by mid-quarter; after the last day, everyone short of the goal is behind)."),
    Kpi("product_touches", "Product touches",
        "Touches that named a product, against the plan's per-product goal.", "touches",
        "Touches on the goal's channel whose timeline item lists the product; planned = the goal per HCP "
        "times the HCPs on the plan."),
    # the email campaign funnel
    Kpi("funnel_sent", "Sent", "Campaign mails the email adapter took.", "mails",
        "Recipients whose mail left the outbox (queued and failed mails are not sent)."),
    Kpi("funnel_delivered", "Delivered", "Recipients the email platform reported the mail delivered to.", "HCPs",
        "Distinct HCPs with a delivered event for the campaign."),
    Kpi("funnel_opened", "Opened", "Recipients who opened the mail.", "HCPs",
        "Distinct HCPs with an open event for the campaign (mail clients that block images never report one)."),
    Kpi("funnel_clicked", "Clicked", "Recipients who clicked a link in the mail.", "HCPs",
        "Distinct HCPs with a click event for the campaign."),
    Kpi("funnel_bounced", "Bounced", "Recipients whose mail bounced or was dropped.", "HCPs",
        "Distinct HCPs with a bounce or dropped event for the campaign."),
    Kpi("funnel_unsubscribed", "Unsubscribed", "Recipients who unsubscribed from the mail.", "HCPs",
        "Distinct HCPs with an unsubscribe or group-unsubscribe event for the campaign."),
    # the HCP page
    Kpi("contact_fatigue", "Contact fatigue",
        "Touches of one HCP in the last 30 and 90 days, per channel and per department.", "touches",
        "Mails sent, visits, call-centre contacts, event invitations and attendances, surveys sent; not opens, "
        "clicks, order status changes or consent changes. A corrected item counts once."),
    # consent
    Kpi("consent_coverage", "Consent coverage",
        "Share of HCPs with a granted, unexpired consent for a (channel, purpose) pair.", "%",
        "HCPs granted for the pair divided by all HCPs not erased or merged (on the insights page: of the "
        "chosen segment's HCPs)."),
    # the insights page
    Kpi("interactions_per_week", "Interactions per channel per week",
        "Timeline items per channel in each calendar week (Monday to Sunday, UTC).", "interactions",
        "Every timeline item whose instant falls in the week, once however many HCPs took part; a corrected "
        "item counts once, as its latest version; restricted (medical, pharmacovigilance) items count, only "
        "their number is shown. With a segment: items with at least one of the segment's HCPs."),
    Kpi("restricted_interactions", "Restricted items",
        "Of the interactions counted, those whose details only Medical Affairs or Pharmacovigilance read.",
        "interactions", "Timeline items of sensitivity medical or pv, counted like any other; their content "
                        "never appears in insights."),
    Kpi("segment_reach", "Reach by segment",
        "Distinct HCPs of a segment touched at least once in the period.", "HCPs",
        "HCPs the segment holds now with at least one touch (the touch table below) between since and until."),
    Kpi("segment_reach_rate", "Reach rate by segment",
        "Reached HCPs as a share of the HCPs the segment holds now.", "%", "Reach divided by the segment's HCPs."),
    Kpi("segment_frequency", "Frequency by segment",
        "How often a reached HCP of the segment was touched in the period, on average.", "touches per HCP",
        "Touches of the segment's HCPs divided by their reach (0 when nobody was reached)."),
    Kpi("nps", "Net Promoter Score (NPS)",
        "Promoters minus detractors among the answers to NPS surveys, from -100 to 100.", "points",
        "% of answers scoring 9-10 minus % scoring 0-6, rounded half away from zero; per month of the answer "
        "on the insights page; no answers: no score."),
)
KPI_BY_KEY: dict[str, Kpi] = {k.key: k for k in KPIS}


def kpi_anchor(key: str) -> str:
    """The glossary anchor of a KPI (``kpi-reach``); an unknown key is a programming error."""
    return KPI_BY_KEY[key].anchor
