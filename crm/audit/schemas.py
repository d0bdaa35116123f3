"""Query and output schemas of the audit API (also the OpenAPI components)."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate

from crm.audit.models import AuditRecord
from crm.auth.models import User
from crm.schemas import PageArgs, UTCDateTime
from crm.timeline.models import SENSITIVITIES, SensitiveRead

SENSITIVE_READ_KINDS = ("interaction", "visit", "consent_evidence", "export", "event")


class AuditQuerySchema(PageArgs):
    entity = fields.String(load_default=None, validate=validate.Length(min=1, max=60))
    entity_id = fields.String(load_default=None, validate=validate.Length(min=1, max=60))
    actor_id = fields.Integer(load_default=None)
    since = UTCDateTime(load_default=None, metadata={"description": "inclusive"})
    until = UTCDateTime(load_default=None, metadata={"description": "exclusive"})


class AuditActorSchema(Schema):
    id = fields.Integer(allow_none=True, metadata={"description": "null for the system"})
    label = fields.String(metadata={"description": "name and role at the time of the write"})


class AuditRecordSchema(Schema):
    id = fields.Integer()
    occurred_at = UTCDateTime()
    actor = fields.Nested(AuditActorSchema)
    action = fields.String()
    entity = fields.String()
    entity_id = fields.String()
    changes = fields.Dict(keys=fields.String(), values=fields.Raw(), metadata={
        "description": 'per field {"before": ..., "after": ...}; personal data is withheld, never in clear'})
    reason = fields.String(allow_none=True)
    prev_hash = fields.String()
    hash = fields.String()


class AuditPageSchema(Schema):
    items = fields.List(fields.Nested(AuditRecordSchema))
    next_cursor = fields.String(allow_none=True)


class SensitiveReadQuerySchema(PageArgs):
    viewer_id = fields.Integer(load_default=None)
    what = fields.String(load_default=None, validate=validate.OneOf(SENSITIVE_READ_KINDS))
    sensitivity = fields.String(load_default=None, validate=validate.OneOf(SENSITIVITIES))
    hcp_id = fields.Integer(load_default=None)
    interaction_id = fields.Integer(load_default=None)
    since = UTCDateTime(load_default=None, metadata={"description": "inclusive"})
    until = UTCDateTime(load_default=None, metadata={"description": "exclusive"})


class ReaderSchema(Schema):
    id = fields.Integer()
    name = fields.String()
    role = fields.String()


class SensitiveReadSchema(Schema):
    id = fields.Integer()
    occurred_at = UTCDateTime()
    viewer = fields.Nested(ReaderSchema)
    what = fields.String(metadata={"description": "interaction, visit, consent_evidence, export or event"})
    interaction_id = fields.Integer(allow_none=True)
    hcp_id = fields.Integer(allow_none=True)
    sensitivity = fields.String(allow_none=True)


class SensitiveReadPageSchema(Schema):
    items = fields.List(fields.Nested(SensitiveReadSchema))
    next_cursor = fields.String(allow_none=True)


def audit_item(rec: AuditRecord) -> dict[str, Any]:
    """The plain dict that ``AuditRecordSchema`` dumps, for one record."""
    return {
        "id": rec.id, "occurred_at": rec.occurred_at, "actor": {"id": rec.actor_id, "label": rec.actor_label},
        "action": rec.action, "entity": rec.entity, "entity_id": rec.entity_id, "changes": rec.changes,
        "reason": rec.reason, "prev_hash": rec.prev_hash, "hash": rec.hash,
    }


def sensitive_read_item(read: SensitiveRead, reader: User) -> dict[str, Any]:
    """The plain dict that ``SensitiveReadSchema`` dumps, for one logged read and its reader."""
    return {
        "id": read.id, "occurred_at": read.occurred_at,
        "viewer": {"id": reader.id, "name": reader.name, "role": reader.role},
        "what": read.what, "interaction_id": read.interaction_id, "hcp_id": read.hcp_id,
        "sensitivity": read.sensitivity,
    }
