"""Where to send the browser next: the one check for every ``next``-style target.

A target is followed only when a browser would resolve it to a path on this
site. Browsers drop tabs and newlines anywhere in a URL, trim leading spaces and
control characters, read a backslash as a slash and treat ``//host`` as another
site, so a check on the raw string (``/%09/evil.example`` arrives as
``"/\\t/evil.example"``) is not enough: anything that is not plainly a local path
is refused, never repaired, and the caller's landing page is used instead.
"""
import unicodedata
from urllib.parse import unquote
from urllib.parse import urlsplit

MAX_TARGET = 2000


def safe_target(target: str | None) -> str | None:
    """``target`` when it is a same-site relative path, else None."""
    if not isinstance(target, str) or not target or len(target) > MAX_TARGET:
        return None
    path = urlsplit(target).path if _plain(target) else ""
    if not path.startswith("/"):
        return None
    # Encoded variants (``/%2F/evil``, ``/%5Cevil``, ``/%09/x``) must be as plain.
    for _round in range(3):
        decoded = unquote(path)
        if decoded == path:
            break
        if not _plain(decoded):
            return None
        path = decoded
    return target


def next_or(target: str | None, fallback: str) -> str:
    """Where to redirect: the safe ``target``, or ``fallback`` (a landing page)."""
    return safe_target(target) or fallback


def _plain(value: str) -> bool:
    """A local absolute path with nothing a browser would rewrite: no control,
    format or space characters, no backslash, no scheme, no host, no ``//``."""
    if any(char.isspace() or unicodedata.category(char)[0] in "CZ" for char in value):
        return False
    if "\\" not in value and value.startswith("/") and not value.startswith("//"):
        parts = urlsplit(value)
        return not parts.scheme and not parts.netloc and "//" not in parts.path
    return False
