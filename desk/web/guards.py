"""View decorators that ask desk.policy, and the request facts services need."""
from functools import wraps

from flask import request
from flask_login import current_user
from flask_login import login_required

from desk import policy


def agent_required(view):
    """Signed in as an active agent, or 403."""
    @login_required
    @wraps(view)
    def wrapper(*args, **kwargs):
        policy.require_agent(current_user)
        return view(*args, **kwargs)
    return wrapper


def client_ip() -> str:
    return request.remote_addr or ""
