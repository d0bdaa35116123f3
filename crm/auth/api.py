from flask import Blueprint

from crm.auth import services
from crm.auth.context import actor, api_auth, bearer_token, client_address
from crm.auth.schemas import PasswordChangeSchema, TokenRequestSchema, TokenSchema
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


@bp.delete("/token")
@api_auth
@doc("Revoke the bearer token sent with this request", tags=["auth"],
     responses={204: "Revoked: the token is refused from now on"}, errors=(401,))
def revoke_token():
    """Signs this token out; the user's other tokens and sessions live on."""
    services.revoke_token(db.session, bearer_token())
    return "", 204


@bp.post("/password")
@api_auth
@doc("Change your own password", tags=["auth"], body=PasswordChangeSchema,
     responses={204: "Changed: every token and session of the user has ended, this one included"},
     errors=(400, 401, 413, 415, 422, 429))
def change_password():
    """The current password is checked and throttled like a sign-in. A new password that is too short, common
    or the user's email or name is refused with 422. All the user's tokens and sessions end."""
    data = load_body(PasswordChangeSchema())
    services.change_own_password(db.session, actor(), data["current_password"], data["new_password"],
                                 client_address())
    return "", 204
