from marshmallow import Schema, fields, validate

from crm.schemas import QuerySchema, StrictSchema, UTCDateTime


class TokenRequestSchema(StrictSchema):
    email = fields.String(required=True, validate=validate.Length(min=3, max=320))
    password = fields.String(required=True, validate=validate.Length(min=1, max=1024))


class PasswordChangeSchema(StrictSchema):
    current_password = fields.String(required=True, validate=validate.Length(min=1, max=1024))
    new_password = fields.String(required=True, validate=validate.Length(min=1, max=1024), metadata={
        "description": "at least 12 characters; not a common password; not the user's email or name"})


class SettingsFormSchema(QuerySchema):
    """The settings page's form (the zone itself is checked by ``services.set_time_zone``)."""

    time_zone = fields.String(required=True, validate=validate.Length(min=1, max=200))
    only_if_unset = fields.Boolean(load_default=False)


class UserOutSchema(Schema):
    id = fields.Integer()
    email = fields.String()
    name = fields.String()
    role = fields.String()


class TokenSchema(Schema):
    token = fields.String()
    expires_at = UTCDateTime()
    user = fields.Nested(UserOutSchema)
