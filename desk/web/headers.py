"""Security headers on every response, and Secure cookies over HTTPS."""
from flask import Flask
from flask import g
from flask import request

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "font-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; "
       "frame-ancestors 'none'")


class SecureCookies:
    """WSGI middleware: over HTTPS (or when HTTPS is forced by config) every
    cookie gets the Secure flag, whoever set it (session, remember-me, CSRF)."""

    def __init__(self, wsgi_app, always: bool):
        self.wsgi_app = wsgi_app
        self.always = always

    def __call__(self, environ, start_response):
        secure = self.always or environ.get("wsgi.url_scheme") == "https"

        def _start_response(status, headers, exc_info=None):
            if secure:
                headers = [(k, v + "; Secure" if k.lower() == "set-cookie" and "; Secure" not in v
                            else v) for k, v in headers]
            return start_response(status, headers, exc_info)

        return self.wsgi_app(environ, _start_response)


def _signed_in() -> bool:
    """Whether this request was served to a signed-in person (as far as
    flask-login looked: it loads the user only when a page asks)."""
    user = g.get("_login_user")
    return bool(user is not None and user.is_authenticated)


def init_app(app: Flask) -> None:
    app.wsgi_app = SecureCookies(app.wsgi_app, app.config["HTTPS"])

    @app.after_request
    def _headers(response):
        h = response.headers
        h.setdefault("Content-Security-Policy", CSP)
        h.setdefault("X-Frame-Options", "DENY")
        h.setdefault("X-Content-Type-Options", "nosniff")
        h.setdefault("Referrer-Policy", "same-origin")
        h.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        h.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
        if _signed_in():
            # Pages for a signed-in person are theirs: no browser or proxy keeps a copy.
            h.setdefault("Cache-Control", "no-store")
        if request.is_secure or app.config["HTTPS"]:
            h.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
        return response
