"""desk: a self-hosted help center whose privacy features are the product."""
from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any, Mapping

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from desk import config as config_module

__version__ = "0.1.0"

ROOT = Path(__file__).resolve().parent.parent


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app: settings, instance files, database, extensions, pages."""
    from desk.web.uploads import DeskRequest
    app = Flask(__name__, template_folder=str(ROOT / "templates"),
                static_folder=str(ROOT / "static"))
    app.request_class = DeskRequest
    app.config.update(config_module.load(config))
    init_instance(app)
    from desk import db
    db.init_app(app)
    from desk.services import regions
    regions.init_app(app)
    init_extensions(app)
    from desk import i18n
    i18n.init_app(app)
    from desk.web import errors, headers, register_blueprints
    headers.init_app(app)
    if app.config["PROXY_FIX"]:
        n = app.config["PROXY_FIX"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)
    errors.init_app(app)
    register_blueprints(app)
    init_templates(app)
    return app


def init_instance(app: Flask) -> None:
    """The data folder (owner-only), the session secret and the encryption
    keyring (made on first start)."""
    from desk import crypto
    from desk import instance_files
    from desk import ratelimits
    instance_files.init_app(app.config)
    app.config["SECRET_KEY"] = crypto.load_secret_key(app.config)
    app.extensions["desk.keyring"] = crypto.load_keyring(app.config)
    app.config.update(
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=app.config["HTTPS"],
        REMEMBER_COOKIE_HTTPONLY=True,
        REMEMBER_COOKIE_SAMESITE="Lax",
        REMEMBER_COOKIE_SECURE=app.config["HTTPS"],
        # Files past their limits are noticed while they stream in (desk.web.uploads),
        # so the form's text survives; this cap only stops abuse.
        MAX_CONTENT_LENGTH=2 * app.config["ATTACHMENTS_MAX_BYTES"] + 2**20,
        MAX_FORM_MEMORY_SIZE=1024 * 1024,
        RATELIMIT_STORAGE_URI=ratelimits.storage_uri(app.config),
        RATELIMIT_HEADERS_ENABLED=True,
    )


def init_extensions(app: Flask) -> None:
    from desk.extensions import csrf, limiter, login_manager
    from desk.web.auth import load_user
    csrf.init_app(app)
    limiter.init_app(app)
    # Only sign-in and sign-up have limits, and their decorators check them; the
    # limiter's before-request check of every other request has nothing to do.
    app.before_request_funcs[None].remove(limiter._check_request_limit)
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.session_protection = "strong"
    login_manager.user_loader(load_user)
    from desk.i18n import lazy_gettext as _l
    login_manager.login_message = _l("Please sign in to see this page.")
    login_manager.login_message_category = "info"


def init_templates(app: Flask) -> None:
    """Globals for templates: the policy (so pages hide what one may not do)."""
    from desk import policy
    from desk.forms.auth import EmptyForm
    from desk.web import labels
    app.jinja_env.globals.update(can=policy.can, is_agent=policy.is_agent,
                                 is_admin=policy.is_admin, EmptyForm=EmptyForm,
                                 timedelta=datetime.timedelta, MODULES=policy.MODULES,
                                 ACTIONS=policy.ACTIONS,
                                 role_label=labels.role_label,
                                 **{name: value for name, value in vars(labels).items()
                                    if name.endswith("_LABELS")})
    app.jinja_env.filters["file_size"] = labels.file_size
    app.jinja_env.filters["fromjson"] = json.loads
