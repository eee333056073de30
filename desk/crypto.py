"""The only module that touches cryptography: instance keys, data subject keys,
sealed values, password hashing and tokens.

The keyring lives outside the database (a 0600 file or DESK_ENCRYPTION_KEYS):
{"active": "<id>", "keys": {"<id>": "<base64 32 bytes>"}}. Every sealed value
names the key that sealed it, so keys can be rotated while old ones still open.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError
from argon2.exceptions import VerificationError
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from flask import current_app

from desk.models import RecordKey
from desk.models import SubjectKey
from desk.models import utcnow

ERASED = "[erased]"
_SEALED_PREFIX = "sealed:v1:"


class Keyring:
    """Instance keys by id, one of them active for new encryptions."""

    def __init__(self, active: str, keys: dict[str, bytes]):
        if active not in keys:
            raise ValueError("the active key id is not in the keyring")
        self.active = active
        self.keys = keys

    @classmethod
    def from_json(cls, text: str) -> "Keyring":
        data = json.loads(text)
        keys = {kid: base64.b64decode(raw) for kid, raw in data["keys"].items()}
        if any(len(k) != 32 for k in keys.values()):
            raise ValueError("every key must be 32 bytes (AES-256)")
        return cls(data["active"], keys)

    def to_json(self) -> str:
        keys = {kid: base64.b64encode(raw).decode() for kid, raw in self.keys.items()}
        return json.dumps({"active": self.active, "keys": keys}, indent=2)


def new_keyring() -> Keyring:
    kid = "k" + secrets.token_hex(4)
    return Keyring(kid, {kid: AESGCM.generate_key(bit_length=256)})


def write_private_file(path: Path, text: str) -> bool:
    """Create ``path`` with mode 0600 unless it exists; True if created."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    return True


def load_keyring(config: dict) -> Keyring:
    """The keyring from DESK_ENCRYPTION_KEYS, else the key file (made on first start)."""
    if config.get("ENCRYPTION_KEYS"):
        return Keyring.from_json(config["ENCRYPTION_KEYS"])
    path = Path(config["DATA_DIR"]) / "keys.json"
    write_private_file(path, new_keyring().to_json())
    return Keyring.from_json(path.read_text())


def load_secret_key(config: dict) -> str:
    """The session signing key from config, else the secret file (made on first start)."""
    if config.get("SECRET_KEY"):
        return config["SECRET_KEY"]
    path = Path(config["DATA_DIR"]) / "secret_key"
    write_private_file(path, secrets.token_urlsafe(48))
    return path.read_text().strip()


def _keyring() -> Keyring:
    return current_app.extensions["desk.keyring"]


def keyring_json() -> str:
    """The instance keyring as its JSON file (for a backup's keys, written apart)."""
    return _keyring().to_json()


def key_ids() -> list[str]:
    return sorted(_keyring().keys)


def key_ids_in(keyring_text: str) -> list[str]:
    """The key ids of a keyring file's text (ValueError if it is not one)."""
    try:
        return sorted(Keyring.from_json(keyring_text).keys)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not a keyring: {exc}") from None


def _seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(12)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def _open(key: bytes, blob: bytes, aad: bytes) -> bytes:
    return AESGCM(key).decrypt(blob[:12], blob[12:], aad)


# -- data subject keys -------------------------------------------------------

def _wrap_aad(subject_id: int) -> bytes:
    return f"subject-key:{subject_id}".encode()


def _subject_key(subject_id: int, create: bool) -> bytes | None:
    """The raw key of a data subject; None once destroyed (or absent and not created)."""
    row = SubjectKey.get_or_none(SubjectKey.subject_id == subject_id)
    if row is None:
        if not create:
            return None
        ring = _keyring()
        raw = AESGCM.generate_key(bit_length=256)
        wrapped = _seal(ring.keys[ring.active], raw, _wrap_aad(subject_id))
        SubjectKey.create(subject_id=subject_id, key_id=ring.active,
                          wrapped_key=base64.b64encode(wrapped).decode())
        return raw
    if row.wrapped_key is None:
        return None
    master = _keyring().keys[row.key_id]
    return _open(master, base64.b64decode(row.wrapped_key), _wrap_aad(subject_id))


def destroy_subject_key(subject_id: int) -> None:
    """Crypto-shred a person: their sealed values can never be opened again."""
    row = SubjectKey.get_or_none(SubjectKey.subject_id == subject_id)
    if row is None:
        SubjectKey.create(subject_id=subject_id, destroyed_at=utcnow())
        return
    row.wrapped_key = None
    row.key_id = None
    row.destroyed_at = utcnow()
    row.save()


def seal_for_subject(subject_id: int, value) -> str:
    """Encrypt a JSON-able value under the person's own key."""
    key = _subject_key(subject_id, create=True)
    if key is None:
        return ERASED
    blob = _seal(key, json.dumps(value).encode(), f"subject:{subject_id}".encode())
    return f"{_SEALED_PREFIX}s{subject_id}:{base64.b64encode(blob).decode()}"


# -- record keys: free text of one record, shredded on its own -----------------

def _record_key(row: RecordKey) -> bytes | None:
    if row is None or row.wrapped_key is None:
        return None
    master = _keyring().keys[row.key_id]
    return _open(master, base64.b64decode(row.wrapped_key), f"record-key:{row.id}".encode())


def seal_for_record(record_type: str, record_id: str, owner_subject_id: int | None, value) -> str:
    """Encrypt free text (which may mention anyone) under a key of the record's
    own, so scrubbing that record later can make its history unreadable."""
    row = (RecordKey.select().where(RecordKey.record_type == record_type,
                                    RecordKey.record_id == str(record_id),
                                    RecordKey.destroyed_at.is_null())
           .order_by(RecordKey.id.desc()).first())
    if row is None:
        ring = _keyring()
        raw = AESGCM.generate_key(bit_length=256)
        row = RecordKey.create(record_type=record_type, record_id=str(record_id),
                               owner_subject_id=owner_subject_id, key_id=ring.active,
                               wrapped_key="")
        wrapped = _seal(ring.keys[ring.active], raw, f"record-key:{row.id}".encode())
        RecordKey.update(wrapped_key=base64.b64encode(wrapped).decode()).where(
            RecordKey.id == row.id).execute()
    else:
        raw = _record_key(row)
    blob = _seal(raw, json.dumps(value).encode(), f"record:{row.id}".encode())
    return f"{_SEALED_PREFIX}r{row.id}:{base64.b64encode(blob).decode()}"


def destroy_record_keys(record_type: str, record_ids: list) -> int:
    """Shred the history of these records' free text; returns keys destroyed."""
    ids = [str(i) for i in record_ids]
    if not ids:
        return 0
    return (RecordKey.update(wrapped_key=None, key_id=None, destroyed_at=utcnow())
            .where(RecordKey.record_type == record_type, RecordKey.record_id.in_(ids),
                   RecordKey.destroyed_at.is_null()).execute())


def destroy_record_keys_of(owner_subject_id: int) -> int:
    """Shred the free-text history of every record a person owned."""
    return (RecordKey.update(wrapped_key=None, key_id=None, destroyed_at=utcnow())
            .where(RecordKey.owner_subject_id == owner_subject_id,
                   RecordKey.destroyed_at.is_null()).execute())


# -- opening sealed values -----------------------------------------------------

def is_sealed(value) -> bool:
    return isinstance(value, str) and value.startswith(_SEALED_PREFIX)


def _parts(value: str) -> tuple[str, int, str]:
    ref, _, b64 = value[len(_SEALED_PREFIX):].partition(":")
    return ref[0], int(ref[1:]), b64


def sealed_owner(value: str) -> int | None:
    """Whose data this sealed value is: the subject, or the record's owner."""
    kind, ref, _ = _parts(value)
    if kind == "s":
        return ref
    row = RecordKey.get_or_none(RecordKey.id == ref)
    return row.owner_subject_id if row else None


def open_sealed(value):
    """Decrypt a sealed value; ERASED once its key was destroyed."""
    kind, ref, b64 = _parts(value)
    if kind == "s":
        key, aad = _subject_key(ref, create=False), f"subject:{ref}"
    else:
        key, aad = _record_key(RecordKey.get_or_none(RecordKey.id == ref)), f"record:{ref}"
    if key is None:
        return ERASED
    try:
        plain = _open(key, base64.b64decode(b64), aad.encode())
    except (InvalidTag, ValueError):
        return ERASED
    return json.loads(plain)


# -- stored secrets (SMTP password, the setup token) ---------------------------

_SECRET_PREFIX = "secret:v1:"


def seal_secret(purpose: str, value: str) -> str:
    """Encrypt an instance secret kept in the database under the active instance
    key; ``purpose`` binds it to its place (a secret moved elsewhere will not open)."""
    ring = _keyring()
    blob = _seal(ring.keys[ring.active], value.encode(), f"secret:{purpose}".encode())
    return f"{_SECRET_PREFIX}{ring.active}:{base64.b64encode(blob).decode()}"


def open_secret(purpose: str, sealed: str | None) -> str | None:
    """The clear secret, or None when there is none or it cannot be opened
    (unknown key, altered, sealed for another purpose)."""
    if not sealed or not sealed.startswith(_SECRET_PREFIX):
        return None
    kid, _, b64 = sealed[len(_SECRET_PREFIX):].partition(":")
    key = _keyring().keys.get(kid)
    if key is None:
        return None
    try:
        return _open(key, base64.b64decode(b64), f"secret:{purpose}".encode()).decode()
    except (InvalidTag, ValueError):
        return None


# -- passwords and tokens ----------------------------------------------------

def _hasher() -> PasswordHasher:
    cfg = current_app.config
    return PasswordHasher(time_cost=cfg["ARGON2_TIME_COST"], memory_cost=cfg["ARGON2_MEMORY_COST"])


def hash_password(password: str) -> str:
    """An argon2id hash (memory-hard) of the password."""
    return _hasher().hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    if not password_hash:
        # Spend the same effort as a real check so timing does not reveal accounts.
        _hasher().hash(password)
        return False
    try:
        return _hasher().verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def new_token(nbytes: int = 32) -> str:
    """A random URL-safe token (setup links, confirmation links, sessions)."""
    return secrets.token_urlsafe(nbytes)


def token_hash(token: str) -> str:
    """How tokens are stored: only their SHA-256."""
    return hashlib.sha256(token.encode()).hexdigest()


def tokens_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a, b)


def chain_hash(prev_hash: str, payload: str) -> str:
    """One link of the audit hash chain."""
    return hashlib.sha256((prev_hash + "\n" + payload).encode()).hexdigest()
