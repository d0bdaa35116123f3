from flask import Blueprint, render_template

from crm.auth.context import page_auth

bp = Blueprint("home", __name__)


@bp.get("/")
@page_auth()
def index():
    return render_template("home/index.html")
