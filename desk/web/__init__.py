"""Blueprints: thin views that parse, call one service, and render."""
from flask import Flask


def register_blueprints(app: Flask) -> None:
    from desk.web import agent
    from desk.web import auth
    from desk.web import health
    from desk.web import portal

    for module in (auth, portal, agent, health):
        app.register_blueprint(module.bp)
