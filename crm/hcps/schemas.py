"""Shapes of HCP and HCO input (validated here) and output (documented here, built by the services).

Schemas check shape only; rules that need the database (territory codes, NPI uniqueness, email already
used, who may write where) live in ``crm.hcps.services``.
"""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, pre_load, validate

from crm.hcps.models import TIERS
from crm.hcps.professions import PROFESSIONS
from crm.schemas import PageArgs, QuerySchema, StrictSchema, UTCDateTime

IDENTIFIER_KIND = validate.Regexp(
    r"^[a-z][A-Za-z0-9_.:-]{0,39}$", error="An identifier kind starts with a lower-case letter: npi, licence:IL."
)
_TAG = validate.Regexp(r"^[^,]{1,40}$", error="A tag is 1 to 40 characters without commas.")
_PHONE = validate.Regexp(
    r"^\+?[0-9][0-9 ()./-]{2,39}$", error="A phone number holds digits, spaces and + ( ) . / - only."
)
_COUNTRY = validate.Regexp(r"^[A-Z]{2}$", error="An ISO 3166 two-letter country code in capitals, e.g. US.")
EDITABLE_STATUSES = ("active", "inactive")  # merged and erased are set by the merge and erasure services


def not_blank(value: str) -> None:
    if not value.strip():
        raise ValidationError("Must not be blank.")


def _name(required: bool) -> fields.String:
    return fields.String(required=required, validate=[validate.Length(min=1, max=200), not_blank])


class _HCPFields(StrictSchema):
    """Every editable HCP field, optional; create and update differ in what they require."""

    first_name = _name(False)
    last_name = _name(False)
    profession = fields.String(validate=validate.OneOf(PROFESSIONS))
    specialty = fields.String(allow_none=True, validate=validate.Length(max=120))
    email = fields.Email(allow_none=True, validate=validate.Length(max=320))
    phone = fields.String(allow_none=True, validate=_PHONE)
    territory = fields.String(allow_none=True, validate=validate.Length(min=1, max=40),
                              metadata={"description": "Territory code"})
    address_line = fields.String(allow_none=True, validate=validate.Length(max=300))
    city = fields.String(allow_none=True, validate=validate.Length(max=120))
    postal_code = fields.String(allow_none=True, validate=validate.Length(max=20))
    state = fields.String(allow_none=True, validate=validate.Length(max=40))
    country = fields.String(validate=_COUNTRY)
    tags = fields.List(fields.String(validate=_TAG), validate=validate.Length(max=20))
    tier = fields.String(allow_none=True, validate=validate.OneOf(TIERS),
                         metadata={"description": "Priority: A (highest), B or C; null clears it"})


class HCPCreateSchema(_HCPFields):
    first_name = _name(True)
    last_name = _name(True)
    profession = fields.String(required=True, validate=validate.OneOf(PROFESSIONS))
    identifiers = fields.Dict(
        keys=fields.String(validate=IDENTIFIER_KIND),
        values=fields.String(validate=validate.Length(min=1, max=80)),
        metadata={"description": 'Identifiers by kind, e.g. {"npi": "1234567893"}'},
    )


class HCPUpdateSchema(_HCPFields):
    """Only the fields sent change. ``version`` is the one the client read: a stale one is 409."""

    version = fields.Integer(required=True, strict=True, validate=validate.Range(min=1))
    status = fields.String(validate=validate.OneOf(EDITABLE_STATUSES))
    identifiers = fields.Dict(
        keys=fields.String(validate=IDENTIFIER_KIND),
        values=fields.String(allow_none=True, validate=validate.Length(min=1, max=80)),
        metadata={"description": "Kinds sent are set; a kind sent as null is removed; others stay"},
    )


class _DropBlankArgs(PageArgs):
    @pre_load
    def _drop_blanks(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        # An empty filter box in a search form means "no filter", not "match the empty string".
        return {k: v for k, v in data.items() if not (isinstance(v, str) and not v.strip())}


class _HCPFilterArgs(_DropBlankArgs):
    q = fields.String(validate=validate.Length(max=200),
                      metadata={"description": "Name (substring), identifier value or email (exact)"})
    territory = fields.String(validate=validate.Length(max=40), metadata={"description": "Territory code"})
    profession = fields.String(validate=validate.OneOf(PROFESSIONS))
    specialty = fields.String(validate=validate.Length(max=120))


class HCPQuerySchema(_HCPFilterArgs):
    mine = fields.Boolean(load_default=False, metadata={"description": "Only HCPs in the viewer's territories"})


class HCPSearchPageArgs(_HCPFilterArgs):
    scope = fields.String(validate=validate.OneOf(("mine", "all")))


# The writes a picker may be scoped to (its form's action; see crm.hcps.picker).
PICKER_ACTIONS = ("visit.create", "order.write", "consent.capture", "campaign.write", "event.write", "hcp.export",
                  "call_centre.contact", "sensitive_log.read")


class HCPPickArgs(QuerySchema):
    """The picker's search (``GET /hcps/pick``): what was typed, and the write the form leads to."""

    q = fields.String(load_default="", validate=validate.Length(max=200))
    for_ = fields.String(data_key="for", load_default=None, validate=validate.OneOf(PICKER_ACTIONS))


class HCPPickItemSchema(Schema):
    id = fields.Integer()
    name = fields.String()
    detail = fields.String(metadata={"description": "specialty or profession, city, territory code"})


class HCPPickSchema(Schema):
    items = fields.List(fields.Nested(HCPPickItemSchema))


class HCOQuerySchema(_DropBlankArgs):
    q = fields.String(validate=validate.Length(max=200), metadata={"description": "Name substring"})
    kind = fields.String(validate=validate.Length(max=30))
    territory = fields.String(validate=validate.Length(max=40), metadata={"description": "Territory code"})


# -- output (documentation of what the services return) --------------------------------------------

class TerritoryRefSchema(Schema):
    code = fields.String()
    name = fields.String()


class ContactDataSchema(Schema):
    visible = fields.Boolean(metadata={"description": "False when email/phone/address_line are masked"})
    rule = fields.String()
    reason = fields.String()


class AffiliationOutSchema(Schema):
    hco_id = fields.Integer()
    name = fields.String()
    kind = fields.String()
    role = fields.String(allow_none=True)


class EmailStatusSchema(Schema):
    status = fields.String(metadata={"description": "valid, or invalid after a hard bounce or drop"})
    reason = fields.String(allow_none=True)
    since = fields.String(allow_none=True)


class HCPOutSchema(Schema):
    id = fields.Integer()
    first_name = fields.String()
    last_name = fields.String()
    full_name = fields.String()
    profession = fields.String()
    specialty = fields.String(allow_none=True)
    status = fields.String()
    territory = fields.Nested(TerritoryRefSchema, allow_none=True)
    identifiers = fields.Dict(keys=fields.String(), values=fields.String())
    email = fields.String(allow_none=True, metadata={"description": "Clear or masked per contact_data"})
    phone = fields.String(allow_none=True, metadata={"description": "Clear or masked per contact_data"})
    address_line = fields.String(allow_none=True, metadata={"description": "Clear or masked per contact_data"})
    contact_data = fields.Nested(ContactDataSchema)
    email_status = fields.Nested(EmailStatusSchema)
    city = fields.String(allow_none=True)
    postal_code = fields.String(allow_none=True)
    state = fields.String(allow_none=True)
    country = fields.String()
    tags = fields.List(fields.String())
    tier = fields.String(allow_none=True, metadata={"description": "Priority: A (highest), B, C, or null"})
    influence_tier = fields.String(allow_none=True, metadata={
        "description": "KOL tier: international, national, regional or local (null: not assessed)"})
    expertise = fields.List(fields.String(), metadata={"description": "KOL areas of expertise"})
    affiliations = fields.List(fields.Nested(AffiliationOutSchema))
    version = fields.Integer(metadata={"description": "Send it back in PATCH; a stale one is 409"})
    merged_into = fields.Integer(allow_none=True, metadata={"description": "Survivor's id when merged"})
    merged_into_url = fields.String(metadata={"description": "Present only when merged_into is set"})
    created_at = UTCDateTime()
    updated_at = UTCDateTime()


class HCPPageSchema(Schema):
    items = fields.List(fields.Nested(HCPOutSchema))
    next_cursor = fields.String(allow_none=True)


class HCOOutSchema(Schema):
    id = fields.Integer()
    name = fields.String()
    kind = fields.String()
    npi = fields.String(allow_none=True)
    city = fields.String(allow_none=True)
    postal_code = fields.String(allow_none=True)
    state = fields.String(allow_none=True)
    country = fields.String()
    status = fields.String()
    territory = fields.Nested(TerritoryRefSchema, allow_none=True)
    hcp_ids = fields.List(fields.Integer(), metadata={"description": "HCPs currently affiliated"})
    created_at = UTCDateTime()
    updated_at = UTCDateTime()


class HCOPageSchema(Schema):
    items = fields.List(fields.Nested(HCOOutSchema))
    next_cursor = fields.String(allow_none=True)


class MergeSchema(StrictSchema):
    """Merge the record ``loser_id`` into the one in the path (the survivor)."""

    loser_id = fields.Integer(required=True, strict=True)
    reason = fields.String(required=True, validate=validate.Length(max=2000),
                           metadata={"description": "Why the two records are one person (kept in the audit)."})
    override_identifier_conflict = fields.Boolean(
        load_default=False, metadata={"description": "Merge although the records carry different national "
                                                     "identifiers (NPI, national id); needs `override_reason`."})
    override_reason = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=2000))


class IdentifierConflictSchema(Schema):
    kind = fields.String()
    survivor = fields.List(fields.String())
    loser = fields.List(fields.String())


class MergeOutSchema(Schema):
    survivor_id = fields.Integer()
    loser_id = fields.Integer()
    moved = fields.Dict(keys=fields.String(), values=fields.Integer(),
                        metadata={"description": "rows re-pointed to the survivor, per table(.column)"})
    dropped = fields.Dict(keys=fields.String(), values=fields.Integer(),
                          metadata={"description": "the loser's rows dropped as duplicates of the survivor's"})
    identifier_conflicts_overridden = fields.List(fields.Nested(IdentifierConflictSchema))
    audit_id = fields.Integer()
