"""Blueprints: thin views that parse, call one service, and render."""
from flask import Flask


def register_blueprints(app: Flask) -> None:
    from desk.web import admin
    from desk.web import agent
    from desk.web import audit
    from desk.web import auth
    from desk.web import exports
    from desk.web import fields
    from desk.web import files
    from desk.web import health
    from desk.web import mail
    from desk.web import me
    from desk.web import notice
    from desk.web import portal
    from desk.web import privacy
    from desk.web import privacy_center
    from desk.web import regions
    from desk.web import roles
    from desk.web import tokens
    from desk.web.pages import IdConverter

    app.url_map.converters["id"] = IdConverter
    for module in (auth, portal, me, agent, admin, privacy, regions, roles, mail, fields, files, health, tokens, exports, audit,
                   privacy_center, notice):
        app.register_blueprint(module.bp)
    from desk.web import api
    api.init_app(app)
