"""View decorators that ask desk.policy, and the request facts services need."""
from functools import wraps

from flask import request
from flask_login import current_user
from flask_login import login_required

from desk import policy


def me():
    """The signed-in person (or the anonymous one) as the object itself: each
    attribute read through Flask-Login's ``current_user`` proxy looks the user
    up again, and a page hands its user to the policy hundreds of times."""
    return current_user._get_current_object()


def agent_required(view):
    """Signed in as an active agent, or 403."""
    @login_required
    @wraps(view)
    def wrapper(*args, **kwargs):
        policy.require_agent(me())
        return view(*args, **kwargs)
    return wrapper


def client_ip() -> str:
    return request.remote_addr or ""
