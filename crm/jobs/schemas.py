"""Shapes of the jobs API."""

from __future__ import annotations

from marshmallow import Schema, fields

from crm.schemas import UTCDateTime


class ProgressOut(Schema):
    done = fields.Integer(metadata={"description": "steps done (a campaign send: recipients handed to the outbox)"})
    total = fields.Integer(allow_none=True, metadata={"description": "steps in all, when known"})


class JobOut(Schema):
    id = fields.Integer()
    kind = fields.String(metadata={"description": "campaign.send, consent.expire, audit.verify, ..."})
    label = fields.String(metadata={"description": "what the job does, in words"})
    subject = fields.String(allow_none=True, metadata={"description": "what it is about, e.g. campaign:12"})
    state = fields.String(metadata={"description": "queued, running, done or failed"})
    progress = fields.Nested(ProgressOut)
    result = fields.Dict(allow_none=True, metadata={"description": "what a done job produced (counts)"})
    error = fields.String(allow_none=True, metadata={"description": "the last attempt's error"})
    attempts = fields.Integer()
    created_by_id = fields.Integer(allow_none=True)
    created_at = UTCDateTime()
    started_at = UTCDateTime(allow_none=True)
    finished_at = UTCDateTime(allow_none=True)
    next_attempt_at = UTCDateTime(allow_none=True, metadata={"description": "a queued job runs from then on"})
