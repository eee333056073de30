"""Recognising a person in free text, as a reader would, for the erasure scrub.

A person is named by their full name (any spacing, any letter case, even over
a line break), by a part of their name on its own (only where the text is
about them: see ``Identifiers.scrub``), by their email address (also when a
line break or a quoted-printable soft break splits it) and its local part, and
by their phone numbers in any common formatting: spaces, dashes, dots, slashes,
brackets, with or without the country prefix, with the national ``0`` or
``(0)``. Each kind is replaced by its own marker.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from dataclasses import field

NAME_REMOVED = "[name removed]"
EMAIL_REMOVED = "[email removed]"
PHONE_REMOVED = "[phone removed]"
MARKERS = {"email": EMAIL_REMOVED, "local": EMAIL_REMOVED, "name": NAME_REMOVED, "phone": PHONE_REMOVED}

MIN_PART = 3  # name parts and local parts shorter than this are too common to remove
MIN_PHONE_DIGITS = 6  # fewer digits could be an order number as well
_BREAK = r"(?:\s|=\r?\n)*"  # what may split an address: white space, a soft line break
_SEPARATORS = r"[\s\-./()]*"
_WORD_PARTS = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)?", re.UNICODE)


def _spread(text: str, between: str) -> str:
    """A pattern matching ``text`` with ``between`` allowed between its characters."""
    return between.join(re.escape(ch) for ch in text)


def _name_pattern(name: str) -> str:
    words = name.split()
    return r"(?<!\w)" + r"[\s_.\-]+".join(re.escape(w) for w in words) + r"(?!\w)"


def _national_numbers(phone: str) -> set[str]:
    """The national significant numbers a stored phone number may stand for
    (the country code's length is unknown: 1, 2 or 3 digits)."""
    digits = re.sub(r"\D", "", phone)
    stripped = phone.strip()
    if stripped.startswith("+"):
        found = {digits[n:] for n in (1, 2, 3)}
    elif stripped.startswith("00"):
        found = {digits[2 + n:] for n in (1, 2, 3)}
    elif stripped.startswith("0"):
        found = {digits[1:]}
    else:
        found = {digits}
    return {n.lstrip("0") for n in found if len(n.lstrip("0")) >= MIN_PHONE_DIGITS}


def _phone_pattern(national: str) -> str:
    prefix = (r"(?:(?:\+|00)" + _SEPARATORS + r"\d{1,3}" + _SEPARATORS + r"(?:\(0\)" + _SEPARATORS
              + r")?|\(0\)" + _SEPARATORS + r"|0" + _SEPARATORS + r")?")
    return r"(?<![\d+])" + prefix + _spread(national, _SEPARATORS) + r"(?!\d)"


@dataclass
class Identifiers:
    """Everything that names one person, compiled once into patterns."""

    names: set[str] = field(default_factory=set)
    emails: set[str] = field(default_factory=set)
    phones: set[str] = field(default_factory=set)
    keep: set[str] = field(default_factory=set)  # placeholders: never treated as a mention

    def __post_init__(self) -> None:
        names = sorted({" ".join(n.split()) for n in self.names if n and n.strip()} - self.keep,
                       key=len, reverse=True)
        emails = sorted({e.strip() for e in self.emails if e and "@" in e} - self.keep,
                        key=len, reverse=True)
        self.parts = sorted({p for n in names for p in _WORD_PARTS.findall(n) if len(p) >= MIN_PART},
                            key=len, reverse=True)
        self.locals = sorted({e.split("@", 1)[0] for e in emails
                              if len(e.split("@", 1)[0]) >= MIN_PART}, key=len, reverse=True)
        nationals = sorted({n for p in self.phones if p for n in _national_numbers(p)},
                           key=len, reverse=True)
        self.nationals = nationals
        # Strong identifiers: each alone says the text is about this person.
        # One pattern, one pass over a text: at each place the first kind that
        # matches wins (an address before the name inside it).
        kinds = [
            ("email", "|".join(_spread(e, _BREAK) for e in emails)),
            ("name", "|".join(_name_pattern(n) for n in names)),
            ("phone", "|".join(_phone_pattern(n) for n in nationals)),
            ("local", "|".join(r"(?<![\w.@])" + re.escape(lp) + r"(?![\w@])" for lp in self.locals)),
        ]
        kinds = [(kind, pattern) for kind, pattern in kinds if pattern]
        self._strong = (re.compile("|".join(f"(?P<{kind}>{pattern})" for kind, pattern in kinds), re.I)
                        if kinds else None)
        self._parts = (re.compile("|".join(r"(?<!\w)" + re.escape(p) + r"(?!\w)" for p in self.parts), re.I)
                       if self.parts else None)

    def __bool__(self) -> bool:
        return self._strong is not None

    def search_terms(self) -> tuple[list[str], list[tuple[str, str]]]:
        """What the text index finds candidate rows with: plain strings (name
        parts, local parts: any mention by name or address contains one), and
        for each phone number the pair of its first and last three digits,
        which stay together in any formatting (a row must hold both)."""
        terms = sorted(set(self.locals) | set(self.parts))
        pairs = sorted({(n[:3], n[-3:]) for n in self.nationals})
        return terms, pairs

    def mentions(self, text: str) -> bool:
        """Whether ``text`` names the person by a strong identifier."""
        return self._strong is not None and self._strong.search(text or "") is not None

    def scrub(self, text: str, about_them: bool) -> str:
        """``text`` with every strong identifier replaced by its marker, and,
        where the text is ``about_them`` (their own thread, or a thread that
        names them), every part of their name standing as a word too."""
        if self._strong is not None:
            text = self._strong.sub(lambda m: MARKERS[m.lastgroup], text)
        if about_them and self._parts is not None:
            text = self._parts.sub(NAME_REMOVED, text)
        return text
