from flask import Blueprint

from crm.auth import services
from crm.auth.context import client_address
from crm.auth.schemas import TokenRequestSchema, TokenSchema
from crm.extensions import db
from crm.openapi import doc
from crm.schemas import load_body

bp = Blueprint("auth_api", __name__, url_prefix="/api/v1/auth")


@bp.post("/token")
@doc("Exchange email and password for a bearer token", tags=["auth"], body=TokenRequestSchema,
     responses={201: TokenSchema}, errors=(400, 401, 413, 415, 422, 429), auth=False)
def token():
    data = load_body(TokenRequestSchema())
    raw, tok, user = services.issue_token(db.session, data["email"], data["password"], client_address())
    body = TokenSchema().dump({"token": raw, "expires_at": tok.expires_at, "user": user})
    return body, 201
