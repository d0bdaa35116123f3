"""The mail outbox: every mail the CRM sends is a row first, handed to the email adapter after the commit.

``enqueue`` (one message) and ``enqueue_many`` (a campaign) write rows in the caller's transaction;
``deliver_pending`` hands them over (after the commit, from ``crm mail send``, or from a scheduler) and
marks a row ``sent`` only once the adapter has taken it. See docs/campaigns.md, "The mail outbox".
"""
