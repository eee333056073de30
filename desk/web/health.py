"""Liveness for load balancers and monitors (no login)."""
from flask import Blueprint
from flask import jsonify

from desk.db import db

bp = Blueprint("health", __name__)


@bp.route("/healthz")
def healthz():
    """200 when the app answers and its database does; 503 otherwise."""
    try:
        db.execute_sql("SELECT 1")
    except Exception:  # noqa: BLE001 - any database fault means "not healthy"
        return jsonify(status="error", database="unreachable"), 503
    return jsonify(status="ok", database="ok")
