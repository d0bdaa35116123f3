from marshmallow import Schema, fields, validate

from crm.schemas import StrictSchema, UTCDateTime


class TokenRequestSchema(StrictSchema):
    email = fields.String(required=True, validate=validate.Length(min=3, max=320))
    password = fields.String(required=True, validate=validate.Length(min=1, max=1024))


class UserOutSchema(Schema):
    id = fields.Integer()
    email = fields.String()
    name = fields.String()
    role = fields.String()


class TokenSchema(Schema):
    token = fields.String()
    expires_at = UTCDateTime()
    user = fields.Nested(UserOutSchema)
