"""Key rotation (``keys-rotate``): a new master key version becomes active at
once (new writes use it), then every wrapped data key is re-wrapped and every
encrypted value and stored secret re-sealed under it, in batches, while the app
keeps serving. Progress is the data itself (rows still on an old key), so a
killed run resumes where it stopped; old keys are retired only when nothing
refers to them. The start and the end are audited.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Callable

from peewee import fn

from desk import audit
from desk import crypto
from desk.audit import Actor
from desk.errors import Conflict
from desk.i18n import lazy_gettext as _l
from desk.models import ApiToken
from desk.models import ContactFieldValue
from desk.models import CustomField
from desk.models import KeyRotation
from desk.models import RecordKey
from desk.models import RegionState
from desk.models import Setting
from desk.models import StoredSecret
from desk.models import SubjectKey
from desk.models import TicketFieldValue
from desk.models import utcnow

RUNNING = "running"
DONE = "done"


@dataclass(frozen=True)
class Target:
    """One kind of row that names a master key: how to find those on other
    keys, how many name each key, and their new values under the active key."""

    name: str
    model: type
    query: Callable[[], object]  # every row under some master key
    renew: Callable[[object], dict]
    audited: bool
    column: str = "key_id"  # the column that changes (checked unchanged when writing)

    def on_other_keys(self, active: str):
        return self.query().where(self.model.key_id != active)

    def counts(self) -> dict[str, int]:
        model = self.model
        rows = (self.query().select(model.key_id, fn.COUNT(model.key_id)).group_by(model.key_id)
                .tuples())
        return {key_id: n for key_id, n in rows}


class SettingSecrets(Target):
    """Secrets kept in a setting's value (the setup token as the value, the
    SMTP password inside the mail settings): the key id is inside the sealed
    text, so rows are told apart by what their sealed strings start with."""

    def on_other_keys(self, active: str):
        return [row for row in self.query() if any(crypto.key_id_of(v) != active
                                                    for _, v in _sealed_in(row))]

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for row in self.query():
            for _, sealed in _sealed_in(row):
                counts[crypto.key_id_of(sealed)] = counts.get(crypto.key_id_of(sealed), 0) + 1
        return counts


class Referenced(Target):
    """Rows that name a master key but cannot be renewed: API tokens are kept
    only as keyed hashes, so the key of a live token stays until it expires or
    is revoked (retiring it would turn the token away)."""

    def on_other_keys(self, active: str):
        return []


def _live_tokens():
    return ApiToken.select().where(ApiToken.revoked_at.is_null(), ApiToken.expires_at > utcnow())


class RegionSecrets(Target):
    """The other store's URL a region move keeps sealed in region_state: the
    key id is inside the sealed text."""

    def on_other_keys(self, active: str):
        return [row for row in self.query() if crypto.key_id_of(row.peer_url) != active]

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for row in self.query():
            counts[crypto.key_id_of(row.peer_url)] = counts.get(crypto.key_id_of(row.peer_url), 0) + 1
        return counts


def _region_secrets():
    return RegionState.select().where(RegionState.peer_url != "")


def _region_secret(row) -> dict:
    return {"peer_url": crypto.reseal_secret("region-url", row.peer_url)[1]}


def _sealed_in(row) -> list[tuple[str, str]]:
    """(name, sealed text) of every secret in a setting's JSON value: the value
    itself, or one of its object's entries."""
    value = json.loads(row.value)
    if crypto.is_secret(value):
        return [("", value)]
    if isinstance(value, dict):
        return [(k, v) for k, v in value.items() if crypto.is_secret(v)]
    return []


def _reseal_named(setting: str, entry: str, sealed: str) -> str:
    """Re-seal one secret of a setting. Its purpose (bound in when sealed) is
    the setting's key, or "<setting>_<entry>", or the entry's name."""
    for purpose in filter(None, (setting if not entry else None, f"{setting}_{entry}" if entry else None,
                                 entry or None)):
        if crypto.open_secret(purpose, sealed) is not None:
            return crypto.reseal_secret(purpose, sealed)[1]
    raise crypto.CannotDecrypt(f"a secret in setting {setting!r} does not open")

def _keyed(model, extra=None):
    def query():
        q = model.select().where(model.key_id.is_null(False), model.key_id != "")
        return q.where(extra()) if extra else q
    return query


def _field_values(model, table: str, owner: str):
    def query():
        return (model.select(model, CustomField.key.alias("field_key")).join(CustomField)
                .where(model.key_id.is_null(False), model.sealed.is_null(False)).objects())

    def renew(row) -> dict:
        key_id, sealed = crypto.reseal_field(table, getattr(row, f"{owner}_id"), row.field_key,
                                             row.sealed)
        return {"key_id": key_id, "sealed": sealed}
    return query, renew


def _wrapped(rewrap):
    def renew(row) -> dict:
        key_id, wrapped = rewrap(row)
        return {"key_id": key_id, "wrapped_key": wrapped}
    return renew


def _secret(row) -> dict:
    key_id, sealed = crypto.reseal_secret(row.name, row.sealed)
    return {"key_id": key_id, "sealed": sealed}


def _setting_secrets():
    return Setting.select().where(Setting.value.contains(json.dumps(crypto.secret_prefix(""))[:-1]))


def _setting_secret(row) -> dict:
    value = json.loads(row.value)
    if crypto.is_secret(value):
        return {"value": json.dumps(_reseal_named(row.key, "", value))}
    for entry, sealed in _sealed_in(row):
        value[entry] = _reseal_named(row.key, entry, sealed)
    return {"value": json.dumps(value)}


def targets() -> list[Target]:
    """Everything under a master key. (A new kind of wrapped key or sealed
    value joins this list, so rotation covers it and retirement waits for it.)"""
    ticket_query, ticket_renew = _field_values(TicketFieldValue, "ticket", "ticket")
    contact_query, contact_renew = _field_values(ContactFieldValue, "user", "user")
    return [
        Target("data subject keys", SubjectKey,
               _keyed(SubjectKey, lambda: SubjectKey.wrapped_key.is_null(False)),
               _wrapped(crypto.rewrap_subject_key), audited=False),
        Target("record keys", RecordKey,
               _keyed(RecordKey, lambda: RecordKey.wrapped_key.is_null(False) & (RecordKey.wrapped_key != "")),
               _wrapped(crypto.rewrap_record_key), audited=False),
        Target("ticket field values", TicketFieldValue, ticket_query, ticket_renew, audited=True),
        Target("contact field values", ContactFieldValue, contact_query, contact_renew, audited=True),
        Target("stored secrets", StoredSecret, _keyed(StoredSecret), _secret, audited=True),
        SettingSecrets("secrets in settings", Setting, _setting_secrets, _setting_secret,
                       audited=True, column="value"),
        RegionSecrets("region store addresses", RegionState, _region_secrets, _region_secret,
                      audited=False, column="peer_url"),
        Referenced("API token hashes", ApiToken, _live_tokens, lambda row: {}, audited=False),
    ]


def remaining(active: str | None = None) -> dict[str, int]:
    """Rows per target still on a key other than the active one."""
    active = active or crypto.active_key_id()
    pending = {t.name: t.on_other_keys(active) for t in targets()}
    return {name: len(rows) if isinstance(rows, list) else rows.count()
            for name, rows in pending.items()}


def usage() -> dict[str, int]:
    """How many rows name each key id, over every target."""
    counts: dict[str, int] = {}
    for t in targets():
        for key_id, n in t.counts().items():
            counts[key_id] = counts.get(key_id, 0) + n
    return counts


def current() -> KeyRotation | None:
    return KeyRotation.select().where(KeyRotation.status == RUNNING).order_by(KeyRotation.id.desc()).first()


def last() -> KeyRotation | None:
    return KeyRotation.select().order_by(KeyRotation.id.desc()).first()


@dataclass
class Report:
    rotation: KeyRotation
    rekeyed: int
    retired: list[str]  # removed from the key file
    unused: list[str]  # unused but kept (keys in the environment: the operator removes them)
    referenced: list[str]  # old keys something still names (a rerun finishes them)


def _begin(actor: Actor, grace: float) -> KeyRotation:
    """A new master key version, active at once, and the rotation's record."""
    old = crypto.key_ids()
    if crypto.keyring_source() is None:
        if not any(remaining().values()):
            raise Conflict(_l("The keys come from DESK_MASTER_KEY and everything already uses its "
                              "active key. Run keys-rotate --generate, set the printed keyring "
                              "on every server, restart them, then run keys-rotate again."))
        to = crypto.active_key_id()
    else:
        to = crypto.add_master_key()
        # Let every process notice the new key file before counting what is
        # left, so none writes under an old key after we looked.
        time.sleep(grace)
    rotation = KeyRotation.create(to_key=to, from_keys=json.dumps([k for k in old if k != to]))
    audit.record(actor, "keys-rotate-start", "KeyRotation", rotation.id,
                 details={"to_key": to, "from_keys": json.loads(rotation.from_keys)})
    return rotation


def _rekey(actor: Actor, target: Target, rows: list) -> int:
    column = target.column
    changes = [(row._pk, {column: getattr(row, column)}, target.renew(row)) for row in rows]
    if target.audited:
        return audit.rekey(actor, target.model, changes)
    n = 0
    model = target.model
    with audit.transaction():
        for pk, expected, values in changes:
            n += model.update(**values).where(model.id == pk,
                                              getattr(model, column) == expected[column]).execute()
    return n


def _batch(target: Target, active: str, batch: int) -> list:
    pending = target.on_other_keys(active)
    if isinstance(pending, list):
        return pending[:batch]
    return list(pending.order_by(target.model._meta.primary_key).limit(batch))


def start(actor: Actor, grace: float | None = None) -> KeyRotation:
    """The running rotation (one a kill interrupted), or a new one: a new
    master key version, active at once."""
    grace = 2 * crypto.RELOAD_SECONDS if grace is None else grace
    return current() or _begin(actor, grace)


def rotate(actor: Actor, batch: int = 200, pause: float = 0.0,
           progress: Callable[[str, int], None] | None = None, grace: float | None = None) -> Report:
    """Run a rotation (started here, or resumed) to the end: re-wrap and
    re-seal in batches, then retire the old keys nothing refers to."""
    rotation = start(actor, grace)
    active = crypto.active_key_id()
    if active != rotation.to_key:
        raise Conflict(_l("The active key (%(active)s) is not the one this rotation started "
                          "with (%(to)s); was the key file replaced?", active=active, to=rotation.to_key))
    done = 0
    for target in targets():
        while True:
            rows = _batch(target, active, batch)
            if not rows:
                break
            n = _rekey(actor, target, rows)
            done += n
            KeyRotation.update(done=KeyRotation.done + n).where(KeyRotation.id == rotation.id).execute()
            if progress:
                progress(target.name, len(rows))
            if pause:
                time.sleep(pause)
    return _finish(actor, rotation, done)


def _finish(actor: Actor, rotation: KeyRotation, done: int) -> Report:
    used = usage()
    old = [k for k in crypto.key_ids() if k != rotation.to_key]
    referenced = [k for k in old if used.get(k)]
    retired = crypto.retire_master_keys([k for k in old if not used.get(k)])
    unused = [k for k in old if k not in referenced and k not in retired]
    if not referenced:
        KeyRotation.update(status=DONE, finished_at=utcnow()).where(KeyRotation.id == rotation.id).execute()
    rotation = KeyRotation.get_by_id(rotation.id)
    audit.record(actor, "keys-rotate-done" if not referenced else "keys-rotate-pass", "KeyRotation",
                 rotation.id, details={"to_key": rotation.to_key, "rows": rotation.done,
                                       "retired": retired, "unused": unused, "referenced": referenced})
    return Report(rotation, done, retired, unused, referenced)


def generated_keyring() -> str:
    """For keys kept in DESK_MASTER_KEY: the keyring with a new active key, to
    set on every server before running keys-rotate."""
    return crypto.generated_keyring_with_new_key()


def status() -> dict:
    """How far key rotation is: the keys, the last run, what is left."""
    return {"active": crypto.active_key_id(), "keys": crypto.key_ids(),
            "source": str(crypto.keyring_source() or "DESK_MASTER_KEY"),
            "rotation": last(), "remaining": remaining(), "usage": usage()}
