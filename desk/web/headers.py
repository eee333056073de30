"""Security headers on every response, and Secure cookies over HTTPS."""
from flask import Flask
from flask import request

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "font-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; "
       "frame-ancestors 'none'")


def _secure(request_is_https: bool, app: Flask) -> bool:
    return request_is_https or app.config["HTTPS"]


def init_app(app: Flask) -> None:
    @app.after_request
    def _headers(response):
        h = response.headers
        h.setdefault("Content-Security-Policy", CSP)
        h.setdefault("X-Frame-Options", "DENY")
        h.setdefault("X-Content-Type-Options", "nosniff")
        h.setdefault("Referrer-Policy", "same-origin")
        h.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        h.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
        if _secure(request.is_secure, app):
            h.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
            cookies = h.getlist("Set-Cookie")
            if cookies:
                h.setlist("Set-Cookie", [c if "; Secure" in c else c + "; Secure" for c in cookies])
        return response
