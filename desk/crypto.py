"""The only module that touches cryptography: instance (master) keys, wrapped
data keys, sealed values, encrypted custom fields, stored secrets, password
hashing and tokens.

The keyring lives outside the database: the 0600 file ``<DATA_DIR>/keys.json``
or the environment (``DESK_MASTER_KEY``, a keyring JSON or one base64 key):
{"active": "<id>", "keys": {"<id>": "<base64 32 bytes>"}}. The database holds
only data keys wrapped under a master key and values tagged with the id of the
key that sealed them, so ``keys-rotate`` can add a key, re-wrap and re-seal
everything while old keys still open, and retire them when nothing refers to them.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import os
import secrets
import time
from pathlib import Path
from typing import Callable, Iterator

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError
from argon2.exceptions import VerificationError
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from flask import current_app

from desk.db import is_in
from desk.models import RecordKey
from desk.models import SubjectKey
from desk.models import utcnow

ERASED = "[erased]"
_SEALED_PREFIX = "sealed:v1:"
KEY_FILE = "keys.json"
RELOAD_SECONDS = 1.0


class CannotDecrypt(Exception):
    """A stored value does not open: wrong record, field or key, or a key that
    is not in the keyring (the message names no value)."""


class Keyring:
    """Master keys by id, one of them active for new encryptions. ``path`` is
    the key file it came from (None when it came from the environment)."""

    def __init__(self, active: str, keys: dict[str, bytes], path: Path | None = None,
                 stamp: tuple | None = None, audit_keys: dict[str, bytes] | None = None):
        if active not in keys:
            raise ValueError("the active key id is not in the keyring")
        self.active = active
        self.keys = keys
        # The audit chain keys of retired master keys (derived one-way from
        # them, see _audit_key): old entries stay verifiable without the key.
        self.audit_keys = audit_keys or {}
        self.path = path
        self.stamp = stamp
        self.checked = time.monotonic()

    @classmethod
    def from_json(cls, text: str, path: Path | None = None, stamp: tuple | None = None) -> "Keyring":
        data = json.loads(text)
        keys = {kid: base64.b64decode(raw) for kid, raw in data["keys"].items()}
        audit_keys = {kid: base64.b64decode(raw) for kid, raw in data.get("audit_keys", {}).items()}
        if any(len(k) != 32 for k in [*keys.values(), *audit_keys.values()]):
            raise ValueError("every key must be 32 bytes (AES-256)")
        return cls(data["active"], keys, path, stamp, audit_keys)

    @classmethod
    def from_env(cls, text: str) -> "Keyring":
        """A keyring JSON, or one bare base64 key (its id derived from it)."""
        text = text.strip()
        if text.startswith("{"):
            return cls.from_json(text)
        raw = base64.b64decode(text)
        if len(raw) != 32:
            raise ValueError("DESK_MASTER_KEY must be 32 bytes in base64, or a keyring JSON")
        kid = "e" + hashlib.sha256(raw).hexdigest()[:8]
        return cls(kid, {kid: raw})

    def to_json(self) -> str:
        keys = {kid: base64.b64encode(raw).decode() for kid, raw in self.keys.items()}
        data = {"active": self.active, "keys": keys}
        if self.audit_keys:
            data["audit_keys"] = {kid: base64.b64encode(raw).decode()
                                  for kid, raw in sorted(self.audit_keys.items())}
        return json.dumps(data, indent=2)


def _new_key_id(taken=()) -> str:
    while True:
        kid = "k" + secrets.token_hex(4)
        if kid not in taken:
            return kid


def new_keyring() -> Keyring:
    kid = _new_key_id()
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


def replace_private_file(path: Path, text: str) -> None:
    """Write ``path`` (mode 0600) through a temporary file and a rename, so a
    crash leaves either the old or the new content, never half of one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _stamp(path: Path) -> tuple:
    st = path.stat()
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def key_file(config: dict) -> Path:
    return Path(config["DATA_DIR"]) / KEY_FILE


def _read_key_file(path: Path) -> Keyring:
    stamp = _stamp(path)
    return Keyring.from_json(path.read_text(), path, stamp)


def load_keyring(config: dict) -> Keyring:
    """The keyring from DESK_MASTER_KEY (or the older DESK_ENCRYPTION_KEYS),
    else the key file (made on first start)."""
    from_env = config.get("MASTER_KEY") or config.get("ENCRYPTION_KEYS")
    if from_env:
        return Keyring.from_env(from_env)
    path = key_file(config)
    write_private_file(path, new_keyring().to_json())
    if path.stat().st_mode & 0o077:
        os.chmod(path, 0o600)  # owner-readable only, whoever copied it in
    return _read_key_file(path)


def load_secret_key(config: dict) -> str:
    """The session signing key from config, else the secret file (made on first start)."""
    if config.get("SECRET_KEY"):
        return config["SECRET_KEY"]
    path = Path(config["DATA_DIR"]) / "secret_key"
    write_private_file(path, secrets.token_urlsafe(48))
    return path.read_text().strip()


def _keyring() -> Keyring:
    """The app's keyring; re-read when the key file changed (another process
    rotated keys), looked at no more than once a second."""
    ring = current_app.extensions["desk.keyring"]
    if ring.path is not None and time.monotonic() - ring.checked >= RELOAD_SECONDS:
        ring.checked = time.monotonic()
        try:
            if _stamp(ring.path) != ring.stamp:
                ring = current_app.extensions["desk.keyring"] = _read_key_file(ring.path)
        except (OSError, ValueError):
            pass  # a file being replaced: keep the keys we have
    return ring


def _master(kid: str | None) -> bytes:
    key = _keyring().keys.get(kid or "")
    if key is None:
        raise CannotDecrypt(f"key {kid!r} is not in the keyring")
    return key


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
    return _open(_master(row.key_id), base64.b64decode(row.wrapped_key), _wrap_aad(subject_id))


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

def _record_wrap_aad(row: RecordKey) -> bytes:
    return f"record-key:{row.id}".encode()


def _record_key(row: RecordKey) -> bytes | None:
    if row is None or row.wrapped_key is None:
        return None
    return _open(_master(row.key_id), base64.b64decode(row.wrapped_key), _record_wrap_aad(row))


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
        wrapped = _seal(ring.keys[ring.active], raw, _record_wrap_aad(row))
        RecordKey.update(wrapped_key=base64.b64encode(wrapped).decode()).where(
            RecordKey.id == row.id).execute()
    else:
        raw = _record_key(row)
    blob = _seal(raw, json.dumps(value).encode(), f"record:{row.id}".encode())
    return f"{_SEALED_PREFIX}r{row.id}:{base64.b64encode(blob).decode()}"


def destroy_record_keys(record_type: str, record_ids: list) -> int:
    """Shred the history of these records' free text; returns keys destroyed."""
    ids = [str(i) for i in record_ids]
    destroyed, now = 0, utcnow()
    for start in range(0, len(ids), 5000):  # under SQLite's limit of variables
        destroyed += (RecordKey.update(wrapped_key=None, key_id=None, destroyed_at=now)
                      .where(RecordKey.record_type == record_type,
                             is_in(RecordKey.record_id, ids[start:start + 5000]),
                             RecordKey.destroyed_at.is_null()).execute())
    return destroyed


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
    try:
        if kind == "s":
            key, aad = _subject_key(ref, create=False), f"subject:{ref}"
        else:
            key, aad = _record_key(RecordKey.get_or_none(RecordKey.id == ref)), f"record:{ref}"
    except (CannotDecrypt, InvalidTag):
        return ERASED
    if key is None:
        return ERASED
    try:
        plain = _open(key, base64.b64decode(b64), aad.encode())
    except (InvalidTag, ValueError):
        return ERASED
    return json.loads(plain)


# -- encrypted custom field values and stored secrets ------------------------------
# Stored as "<key id>:<base64 nonce + ciphertext>"; the associated data binds
# the value to where it belongs (and to the key id), so a value copied to
# another row, field or secret name does not open.

def _field_aad(table: str, record_id: int, field_key: str, kid: str) -> bytes:
    return f"field:{table}:{record_id}:{field_key}:{kid}".encode()


def _seal_tagged(aad_of, text: str) -> tuple[str, str]:
    ring = _keyring()
    blob = _seal(ring.keys[ring.active], text.encode(), aad_of(ring.active))
    return ring.active, f"{ring.active}:{base64.b64encode(blob).decode()}"


def _open_tagged(aad_of, stored: str) -> str:
    kid, _, b64 = (stored or "").partition(":")
    try:
        return _open(_master(kid), base64.b64decode(b64, validate=True), aad_of(kid)).decode()
    except (InvalidTag, ValueError) as err:
        raise CannotDecrypt("the stored value does not belong here or was altered") from err


def key_id_of(stored: str) -> str:
    """The id of the master key a tagged value (or a sealed secret) was sealed with."""
    return (stored or "").removeprefix(_SECRET_PREFIX).partition(":")[0]


def seal_field(table: str, record_id: int, field_key: str, text: str) -> tuple[str, str]:
    """Encrypt one custom field value (AES-256-GCM) with the active key;
    returns (key id, stored text)."""
    return _seal_tagged(lambda kid: _field_aad(table, record_id, field_key, kid), text)


def open_field(table: str, record_id: int, field_key: str, stored: str) -> str:
    """Decrypt one custom field value; CannotDecrypt if it is not this
    record's and field's, or was altered."""
    return _open_tagged(lambda kid: _field_aad(table, record_id, field_key, kid), stored)


# Stored secrets (the SMTP password, the setup token): "secret:v1:<key id>:<base64>".

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




def seal_link(purpose: str, payload: dict) -> str:
    """A URL-safe token carrying ``payload`` encrypted and authenticated under
    the active key, with the time it was made: a link that needs nothing
    stored (a sign-up waiting for its address to be confirmed)."""
    ring = _keyring()
    plain = json.dumps({"t": int(time.time()), "p": payload}, ensure_ascii=False).encode()
    blob = _seal(ring.keys[ring.active], plain, f"link:{purpose}".encode())
    return f"{ring.active}.{base64.urlsafe_b64encode(blob).decode().rstrip('=')}"


def open_link(purpose: str, token: str) -> tuple[dict, float] | None:
    """(payload, age in seconds) of a ``seal_link`` token, or None when it is
    not one (made up, altered, for another purpose, or its key is gone)."""
    kid, _, b64 = (token or "").partition(".")
    key = _keyring().keys.get(kid)
    if key is None or not b64 or len(b64) > 8000:
        return None
    try:
        blob = base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4))
        data = json.loads(_open(key, blob, f"link:{purpose}".encode()))
    except (InvalidTag, ValueError):
        return None
    return data["p"], time.time() - data["t"]


def encrypt_secret(name: str, text: str) -> str:
    """Encrypt a secret desk keeps (e.g. the SMTP password) under the active
    key, bound to its name. Store the result; the key id is in it."""
    return seal_secret(name, text)


def decrypt_secret(name: str, stored: str) -> str:
    """The clear secret stored under ``name``; CannotDecrypt if altered,
    moved to another name, or sealed with a key no longer in the keyring."""
    clear = open_secret(name, stored)
    if clear is None:
        raise CannotDecrypt("the stored secret does not belong here, was altered or its key is gone")
    return clear


def secret_prefix(kid: str) -> str:
    """How a secret sealed with key ``kid`` starts ("" for any key)."""
    return f"{_SECRET_PREFIX}{kid}:" if kid else _SECRET_PREFIX


def is_secret(value) -> bool:
    return isinstance(value, str) and value.startswith(_SECRET_PREFIX)


# -- key rotation ------------------------------------------------------------------

def active_key_id() -> str:
    return _keyring().active


def keyring_source() -> Path | None:
    """The key file the keys come from; None when they come from the environment."""
    return _keyring().path


def add_master_key() -> str:
    """A new master key version, made active in the key file (through a
    rename, so processes reading it see the old or the new file); its id."""
    ring = _keyring()
    if ring.path is None:
        raise ValueError("the keys come from the environment")
    current = _read_key_file(ring.path)
    kid = _new_key_id(current.keys)
    current.keys[kid] = AESGCM.generate_key(bit_length=256)
    current.active = kid
    replace_private_file(ring.path, current.to_json())
    current_app.extensions["desk.keyring"] = _read_key_file(ring.path)
    return kid


def retire_master_keys(key_ids: list[str]) -> list[str]:
    """Remove keys (never the active one) from the key file; those removed."""
    ring = _keyring()
    if ring.path is None:
        return []
    current = _read_key_file(ring.path)
    gone = [k for k in key_ids if k in current.keys and k != current.active]
    if gone:
        for kid in gone:
            # The audit chain stays verifiable: keep the key derived for it.
            current.audit_keys[kid] = _derive_audit_key(current.keys[kid])
            del current.keys[kid]
        replace_private_file(ring.path, current.to_json())
        current_app.extensions["desk.keyring"] = _read_key_file(ring.path)
    return gone


def generated_keyring_with_new_key() -> str:
    """For keys kept in the environment: the current keyring plus a new active
    key, as JSON to set as DESK_MASTER_KEY on every server."""
    ring = _keyring()
    kid = _new_key_id(ring.keys)
    keys = dict(ring.keys, **{kid: AESGCM.generate_key(bit_length=256)})
    # With the audit keys of every current key, so the keyring set next may
    # drop old master keys and still verify the audit entries made under them.
    audit_keys = {**ring.audit_keys, **{k: _derive_audit_key(raw) for k, raw in ring.keys.items()}}
    return Keyring(kid, keys, audit_keys=audit_keys).to_json()


def rewrap_subject_key(row: SubjectKey) -> tuple[str, str]:
    """The person's data key wrapped under the active master key instead."""
    raw = _open(_master(row.key_id), base64.b64decode(row.wrapped_key), _wrap_aad(row.subject_id))
    ring = _keyring()
    wrapped = _seal(ring.keys[ring.active], raw, _wrap_aad(row.subject_id))
    return ring.active, base64.b64encode(wrapped).decode()


def rewrap_record_key(row: RecordKey) -> tuple[str, str]:
    """The record's data key wrapped under the active master key instead."""
    raw = _open(_master(row.key_id), base64.b64decode(row.wrapped_key), _record_wrap_aad(row))
    ring = _keyring()
    wrapped = _seal(ring.keys[ring.active], raw, _record_wrap_aad(row))
    return ring.active, base64.b64encode(wrapped).decode()


def reseal_field(table: str, record_id: int, field_key: str, stored: str) -> tuple[str, str]:
    """A custom field value re-encrypted under the active key."""
    return seal_field(table, record_id, field_key, open_field(table, record_id, field_key, stored))


def reseal_secret(name: str, stored: str) -> tuple[str, str]:
    """A stored secret re-encrypted under the active key: (key id, sealed)."""
    sealed = seal_secret(name, decrypt_secret(name, stored))
    return key_id_of(sealed), sealed


# -- file data keys: attachment bytes sealed in streamed chunks -----------------
#
# A file is sealed under a data key of its own (AES-256-GCM), in chunks of
# FILE_CHUNK clear bytes, so it is encrypted and decrypted as it streams and a
# byte range opens only the chunks it touches. Layout: FILE_MAGIC, a 7-byte
# random nonce prefix, then per chunk its ciphertext and 16-byte tag. The nonce
# of chunk i is prefix + i (4 bytes) + 1 if it is the last chunk else 0, so
# chunks cannot be reordered, dropped or the file cut short unnoticed.
# The data key is wrapped under the owner's subject key: destroying that key
# makes every copy of the file (backups, bucket versions) unreadable.

FILE_MAGIC = b"DESKF1"
FILE_CHUNK = 64 * 1024
_FILE_TAG = 16
_FILE_NONCE_PREFIX = 7
FILE_HEADER = len(FILE_MAGIC) + _FILE_NONCE_PREFIX
_FILE_KEY_PREFIX = "filekey:v1:"


class FileTampered(ValueError):
    """A sealed file's bytes do not open under its key (altered or truncated)."""


def new_file_key() -> bytes:
    """A fresh random data key for one file."""
    return AESGCM.generate_key(bit_length=256)


def _file_key_aad(subject_id: int) -> bytes:
    return f"file-key:{subject_id}".encode()


def wrap_file_key(subject_id: int, data_key: bytes) -> str:
    """The data key sealed under the person's subject key (made if they have
    none yet); the text names the person. ValueError once their key is destroyed."""
    key = _subject_key(subject_id, create=True)
    if key is None:
        raise ValueError("the subject key was destroyed")
    blob = _seal(key, data_key, _file_key_aad(subject_id))
    return f"{_FILE_KEY_PREFIX}s{subject_id}:{base64.b64encode(blob).decode()}"


def file_key_owner(wrapped: str) -> int:
    """Whose subject key wraps this data key."""
    if not wrapped.startswith(_FILE_KEY_PREFIX):
        raise ValueError("not a wrapped file key")
    ref = wrapped[len(_FILE_KEY_PREFIX):].partition(":")[0]
    return int(ref[1:])


def unwrap_file_key(wrapped: str) -> bytes | None:
    """The data key; None once the owner's subject key was destroyed."""
    subject_id = file_key_owner(wrapped)
    key = _subject_key(subject_id, create=False)
    if key is None:
        return None
    b64 = wrapped[len(_FILE_KEY_PREFIX):].partition(":")[2]
    try:
        return _open(key, base64.b64decode(b64), _file_key_aad(subject_id))
    except (InvalidTag, ValueError):
        return None


def rewrap_file_key(wrapped: str, subject_id: int | None = None) -> str:
    """The same data key wrapped anew (under a new subject key after rotation,
    or another person's); the file's bytes are not touched."""
    data_key = unwrap_file_key(wrapped)
    if data_key is None:
        raise ValueError("the data key can no longer be opened")
    return wrap_file_key(file_key_owner(wrapped) if subject_id is None else subject_id, data_key)


def _chunk_nonce(prefix: bytes, index: int, last: bool) -> bytes:
    return prefix + index.to_bytes(4, "big") + (b"\x01" if last else b"\x00")


def sealed_file_size(clear_size: int) -> int:
    """The stored size of a sealed file of ``clear_size`` bytes."""
    chunks = max(1, -(-clear_size // FILE_CHUNK))
    return FILE_HEADER + clear_size + chunks * _FILE_TAG


def seal_file_chunks(data_key: bytes, read) -> Iterator[bytes]:
    """The sealed file, piece by piece, from ``read(n)`` of the clear bytes."""
    prefix = os.urandom(_FILE_NONCE_PREFIX)
    aead = AESGCM(data_key)
    yield FILE_MAGIC + prefix
    index, chunk = 0, _read_full(read, FILE_CHUNK)
    while True:
        following = _read_full(read, FILE_CHUNK) if len(chunk) == FILE_CHUNK else b""
        last = not following
        yield aead.encrypt(_chunk_nonce(prefix, index, last), chunk, FILE_MAGIC)
        if last:
            return
        index, chunk = index + 1, following


def _read_full(read, size: int) -> bytes:
    """Exactly ``size`` bytes unless the stream ends first (streams may return less)."""
    parts, want = [], size
    while want:
        data = read(want)
        if not data:
            break
        parts.append(data)
        want -= len(data)
    return b"".join(parts)


def sealing_reader(data_key: bytes, stream) -> io.BufferedReader:
    """A readable stream of the sealed bytes of ``stream`` (for uploads)."""
    return io.BufferedReader(_IterStream(seal_file_chunks(data_key, stream.read)),
                             buffer_size=FILE_CHUNK + _FILE_TAG)


def open_file_chunks(data_key: bytes, open_range, clear_size: int, start: int = 0,
                     end: int | None = None) -> Iterator[bytes]:
    """Clear bytes ``start``..``end`` of a sealed file of ``clear_size`` bytes;
    ``open_range(a, b)`` gives a stream of its stored bytes a..b. Only the
    chunks the range touches are read and opened. FileTampered on any fault."""
    end = clear_size if end is None else min(end, clear_size)
    if start >= end:
        return
    chunks = max(1, -(-clear_size // FILE_CHUNK))
    first, final = start // FILE_CHUNK, (end - 1) // FILE_CHUNK
    stride = FILE_CHUNK + _FILE_TAG
    with open_range(0, FILE_HEADER) as head:
        header = head.read()
    if len(header) != FILE_HEADER or not header.startswith(FILE_MAGIC):
        raise FileTampered("not a sealed file")
    prefix = header[len(FILE_MAGIC):]
    aead = AESGCM(data_key)
    offset = FILE_HEADER + first * stride
    stop = min(FILE_HEADER + (final + 1) * stride, sealed_file_size(clear_size))
    with open_range(offset, stop) as body:
        for index in range(first, final + 1):
            size = min(FILE_CHUNK, clear_size - index * FILE_CHUNK) + _FILE_TAG
            blob = _read_full(body.read, size)
            try:
                clear = aead.decrypt(_chunk_nonce(prefix, index, index == chunks - 1), blob, FILE_MAGIC)
            except (InvalidTag, ValueError):
                raise FileTampered(f"chunk {index} does not open") from None
            lo = start - index * FILE_CHUNK if index == first else 0
            hi = end - index * FILE_CHUNK if index == final else len(clear)
            yield clear[lo:hi]


def opening_reader(data_key: bytes, open_range, clear_size: int, start: int = 0,
                   end: int | None = None) -> io.BufferedReader:
    """``open_file_chunks`` as a readable stream (for downloads and exports)."""
    return io.BufferedReader(_IterStream(open_file_chunks(data_key, open_range, clear_size,
                                                           start, end)),
                             buffer_size=FILE_CHUNK)


class _IterStream(io.RawIOBase):
    """A readable stream over an iterator of byte strings."""

    def __init__(self, parts: Iterator[bytes]):
        self._parts = parts
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._pending:
            try:
                self._pending = memoryview(next(self._parts))
            except StopIteration:
                return 0
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def close(self) -> None:
        close = getattr(self._parts, "close", None)
        if close:
            close()
        super().close()


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


def _api_token_key(key_id: str) -> bytes:
    """The HMAC key for API tokens, derived from one keyring key (a key of
    its own, so a token hash never reveals anything about the sealing key)."""
    return hmac.new(_keyring().keys[key_id], b"desk api token hmac v1", hashlib.sha256).digest()


def api_token_digest(token: str) -> tuple[str, str]:
    """(key id, HMAC-SHA-256 hex) of an API token under the active key: how it is stored."""
    kid = _keyring().active
    return kid, hmac.new(_api_token_key(kid), token.encode(), hashlib.sha256).hexdigest()


def api_token_digests(token: str) -> list[str]:
    """The token's HMAC under every key of the keyring (so tokens made before
    a key rotation still work). A fast, constant-time-per-key look-up."""
    return [hmac.new(_api_token_key(kid), token.encode(), hashlib.sha256).hexdigest()
            for kid in sorted(_keyring().keys)]


def throttle_key(text: str) -> str:
    """A keyed hash naming a sign-in counter (of an email address, say), so
    the rate-limit store never holds the address itself. Keyed by the active
    master key: a rotation simply starts the counters again."""
    key = hmac.new(_master(_keyring().active), b"desk sign-in throttle v1", hashlib.sha256).digest()
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()[:32]


def session_digest(secret: str) -> str:
    """How a browser session's secret is stored: HMAC-SHA-256 under a key
    derived from the session signing key (outside the database; the cookies
    that carry the secret are signed with that key too, so both change together)."""
    key = hmac.new(current_app.config["SECRET_KEY"].encode(), b"desk browser session v1",
                   hashlib.sha256).digest()
    return hmac.new(key, secret.encode(), hashlib.sha256).hexdigest()


def tokens_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a, b)


def chain_hash(prev_hash: str, payload: str) -> str:
    """One link of the audit chain as desk made it before the chain was keyed
    (plain SHA-256: anyone can recompute it); only verified, never made."""
    return hashlib.sha256((prev_hash + "\n" + payload).encode()).hexdigest()


# -- the keyed audit chain and its witness ---------------------------------------
# Each entry's hash is an HMAC-SHA-256 under a key derived one-way from a master
# key (the entry names its id), so rewriting an entry and re-hashing the rest
# needs a key that is not in the database. A retired master key leaves its
# derived audit key in the keyring ("audit_keys"), so old entries still verify.

def _derive_audit_key(master: bytes) -> bytes:
    return hmac.new(master, b"desk audit chain v1", hashlib.sha256).digest()


def _audit_key(kid: str) -> bytes:
    ring = _keyring()
    if kid in ring.keys:
        return _derive_audit_key(ring.keys[kid])
    if kid in ring.audit_keys:
        return ring.audit_keys[kid]
    raise CannotDecrypt(f"key {kid!r} is not in the keyring")


def audit_key_id() -> str:
    """The key id new audit entries (and checkpoints) are made with."""
    return _keyring().active


def chain_mac(kid: str, prev_hash: str, payload: str) -> str:
    """One link of the keyed audit chain (CannotDecrypt: key ``kid`` is unknown)."""
    return chain_macs(kid)(prev_hash, payload)


def chain_macs(kid: str) -> Callable[[str, str], str]:
    """``chain_mac`` for many links under one key: the key is looked up and
    its HMAC state prepared once (a bulk write of entries)."""
    base = hmac.new(_audit_key(kid), digestmod=hashlib.sha256)

    def mac(prev_hash: str, payload: str) -> str:
        link = base.copy()
        link.update((prev_hash + "\n" + payload).encode())
        return link.hexdigest()
    return mac


def witness_mac(kid: str, text: str) -> str:
    """The signature of one checkpoint line of the audit witness file."""
    key = hmac.new(_audit_key(kid), b"desk audit witness v1", hashlib.sha256).digest()
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def append_private_line(path: Path, line: str) -> None:
    """Append one line to a 0600 file (made if missing) and flush it to disk."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, (line.rstrip("\n") + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    if path.stat().st_mode & 0o077:
        os.chmod(path, 0o600)


# -- files encrypted at rest (bulk exports) --------------------------------------

EXPORT_MAGIC = b"DESKENC1"
EXPORT_CHUNK = 256 * 1024
_WRAP_EXPORT_AAD = b"file-key"


def new_export_key() -> tuple[bytes, str]:
    """A fresh data key for one file, and its wrapped form to store beside it."""
    ring = _keyring()
    raw = AESGCM.generate_key(bit_length=256)
    wrapped = _seal(ring.keys[ring.active], raw, _WRAP_EXPORT_AAD)
    return raw, f"{ring.active}:{base64.b64encode(wrapped).decode()}"


def unwrap_export_key(wrapped: str) -> bytes:
    kid, _, b64 = wrapped.partition(":")
    return _open(_keyring().keys[kid], base64.b64decode(b64), _WRAP_EXPORT_AAD)


def _export_chunk_aad(index: int, final: bool) -> bytes:
    return EXPORT_MAGIC + index.to_bytes(8, "big") + (b"\x01" if final else b"\x00")


class ExportWriter(io.RawIOBase):
    """A write-only stream that stores what is written to ``out`` encrypted:
    AES-256-GCM in chunks, each bound to its position, the last one marked,
    so reordering, truncation or any changed byte is detected on reading."""

    def __init__(self, out, key: bytes):
        self._out, self._aead, self._buffer, self._index = out, AESGCM(key), bytearray(), 0
        out.write(EXPORT_MAGIC)

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self._buffer += data
        while len(self._buffer) > EXPORT_CHUNK:
            self._emit(bytes(self._buffer[:EXPORT_CHUNK]), final=False)
            del self._buffer[:EXPORT_CHUNK]
        return len(data)

    def _emit(self, chunk: bytes, final: bool) -> None:
        nonce = os.urandom(12)
        sealed = nonce + self._aead.encrypt(nonce, chunk, _export_chunk_aad(self._index, final))
        self._out.write((b"\x01" if final else b"\x00") + len(sealed).to_bytes(4, "big") + sealed)
        self._index += 1

    def close(self) -> None:
        if not self.closed:
            self._emit(bytes(self._buffer), final=True)
            self._buffer.clear()
        super().close()


def decrypt_export(source, key: bytes) -> Iterator[bytes]:
    """The clear bytes of a file written by ExportWriter, chunk by chunk;
    ValueError if it was altered or cut short."""
    if source.read(len(EXPORT_MAGIC)) != EXPORT_MAGIC:
        raise ValueError("not an encrypted desk file")
    aead, index = AESGCM(key), 0
    while True:
        head = source.read(5)
        if len(head) < 5:
            raise ValueError("the encrypted file is cut short")
        final, size = head[0] == 1, int.from_bytes(head[1:], "big")
        sealed = source.read(size)
        try:
            yield aead.decrypt(sealed[:12], sealed[12:], _export_chunk_aad(index, final))
        except (InvalidTag, ValueError):
            raise ValueError("the encrypted file was altered") from None
        if final:
            return
        index += 1
