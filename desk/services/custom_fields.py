"""Custom fields: admins define them for tickets and contacts; agents and end
users fill them in; values are validated per type, governed by the same
field-level permissions as built-in fields, and, for encrypted fields, sealed
by desk.crypto, shown masked and revealed (audited) only to roles that may.

Every function takes the acting user; policy decides, audit writes.
"""
from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from decimal import Decimal
from decimal import InvalidOperation

from flask_babel import get_locale

from desk import audit
from desk import crypto
from desk import policy
from desk.audit import Actor
from desk.db import prepared
from desk.errors import Conflict
from desk.errors import InvalidInput
from desk.errors import NotFound
from desk.errors import PermissionDenied
from desk.i18n import lazy_gettext as _l
from desk.models import ContactFieldValue
from desk.models import CustomField
from desk.models import Ticket
from desk.models import TicketFieldValue
from desk.models import User
from desk.models import utcnow
from desk.models.fields import FIELD_MODULES
from desk.models.fields import TYPES
from desk.services.people import clean_text
from desk.services.people import normalize_email

KEY_RE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
PHONE_RE = re.compile(r"^\+?[0-9][0-9 ()./-]{2,48}$")
NUMBER_LIMIT = Decimal("1e15")
TEXT_MAX = 500
LONG_TEXT_MAX = 10_000
CHOICES_MAX = 100
MASK = "••••"
UNREADABLE = object()  # a sealed value that does not open

VALUE_TABLES = {"tickets": TicketFieldValue, "contacts": ContactFieldValue}
_OWNER = {"tickets": "ticket", "contacts": "user"}
_TABLE_NAMES = {"tickets": "ticket", "contacts": "user"}
RECORD_TYPES = {"tickets": "Ticket", "contacts": "User"}


class FieldErrors(InvalidInput):
    """Several custom fields are wrong; ``errors`` maps field key -> message."""

    def __init__(self, errors: dict[str, str]):
        super().__init__(" ".join(str(m) for m in errors.values()))
        self.errors = errors


# -- definitions -------------------------------------------------------------------

@prepared(shape=("public_only",))
def _live_fields(module, public_only):
    query = CustomField.select().where(CustomField.module == module, CustomField.deleted_at.is_null())
    if public_only:
        query = query.where(CustomField.public == True)  # noqa: E712
    return query.order_by(CustomField.position, CustomField.id)


def live_fields(module: str, public_only: bool = False) -> list[CustomField]:
    """The module's fields (not in the recycle bin), in their order."""
    return list(_live_fields.rows(module=module, public_only=public_only))


def labels() -> dict[str, str]:
    """"module.cf_<key>" -> label in the reader's language, for permission tables."""
    return {f"{f.module}.{f.name}": _label(f) for f in
            CustomField.select().where(CustomField.deleted_at.is_null())}


def choices_of(field: CustomField) -> list[str]:
    return json.loads(field.choices or "[]")


def definitions(admin: User) -> dict:
    """Every field by module, and those waiting in the recycle bin."""
    policy.require(admin, "settings:manage")
    deleted = (CustomField.select().where(CustomField.deleted_at.is_null(False))
               .order_by(CustomField.deleted_at.desc()))
    return {"modules": {m: live_fields(m) for m in FIELD_MODULES}, "deleted": list(deleted)}


def get_definition(admin: User, field_id: int) -> CustomField:
    policy.require(admin, "settings:manage")
    field = CustomField.get_or_none(CustomField.id == field_id, CustomField.deleted_at.is_null())
    if field is None:
        raise NotFound(_l("No such field."))
    return field


def _clean_definition(data: dict) -> dict:
    label = clean_text(data.get("label"), 200)
    label_zh = clean_text(data.get("label_zh"), 200, required=False)
    try:
        position = int(data.get("position") or 0)
    except (TypeError, ValueError):
        raise InvalidInput(_l("The order is a whole number.")) from None
    if not -10_000 <= position <= 10_000:
        raise InvalidInput(_l("The order is a whole number.")) from None
    choices = []
    for line in str(data.get("choices") or "").splitlines():
        line = clean_text(line, 200, required=False)
        if line and line not in choices:
            choices.append(line)
    if len(choices) > CHOICES_MAX:
        raise InvalidInput(_l("Use at most %(n)d choices.", n=CHOICES_MAX))
    return {"label": label, "label_zh": label_zh, "position": position,
            "required": bool(data.get("required")), "public": bool(data.get("public")),
            "choices": json.dumps(choices, ensure_ascii=False)}


def create(admin: User, module: str, data: dict, ip: str = "") -> CustomField:
    """Define a new field. Its key and type never change afterwards."""
    policy.require(admin, "settings:manage")
    if module not in FIELD_MODULES:
        raise InvalidInput(_l("Choose tickets or contacts."))
    key = (data.get("key") or "").strip()
    if not KEY_RE.match(key):
        raise InvalidInput(_l("The key starts with a small letter and has only small letters, "
                              "digits and underscores (at most 40)."))
    kind = data.get("type")
    if kind not in TYPES:
        raise InvalidInput(_l("Choose a field type."))
    values = _clean_definition(data)
    if kind == "choice" and not choices_of_json(values["choices"]):
        raise InvalidInput(_l("A choice list needs at least one choice (one per line)."))
    with audit.transaction():
        if CustomField.select().where(CustomField.module == module, CustomField.key == key).exists():
            raise Conflict(_l("A field with this key exists (perhaps in the recycle bin)."))
        return audit.create(Actor.of(admin, ip), CustomField, module=module, key=key, type=kind,
                            encrypted=bool(data.get("encrypted")), **values)


def choices_of_json(text: str) -> list[str]:
    return json.loads(text)


def update(admin: User, field_id: int, data: dict, ip: str = "") -> dict:
    """Change labels, order, choices, who sees it, or mark it encrypted (its
    existing values are then sealed by a background job). Returns changes."""
    field = get_definition(admin, field_id)
    values = _clean_definition(data)
    if field.type == "choice" and not choices_of_json(values["choices"]):
        raise InvalidInput(_l("A choice list needs at least one choice (one per line)."))
    if field.encrypted and not data.get("encrypted"):
        raise InvalidInput(_l("An encrypted field stays encrypted."))
    if data.get("encrypted") and not field.encrypted:
        values.update(encrypted=True, encrypting=True)
    return audit.update(Actor.of(admin, ip), field, **values)


def delete(admin: User, field_id: int, ip: str = "") -> CustomField:
    """Move a field (with its values) to the recycle bin."""
    field = get_definition(admin, field_id)
    audit.update(Actor.of(admin, ip), field, action="delete", deleted_at=utcnow(),
                 deleted_by=admin.id)
    return field


def restore(admin: User, field_id: int, ip: str = "") -> CustomField:
    """Bring a deleted field back with its values."""
    policy.require(admin, "settings:manage")
    field = CustomField.get_or_none(CustomField.id == field_id, CustomField.deleted_at.is_null(False))
    if field is None:
        raise NotFound(_l("Not in the recycle bin."))
    audit.update(Actor.of(admin, ip), field, action="restore", deleted_at=None, deleted_by=None)
    return field


# -- validation ----------------------------------------------------------------------

def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = int(ch)
        if i % 2:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


def _clean_card(raw: str) -> str:
    digits = re.sub(r"[ -]", "", raw)
    if not re.fullmatch(r"[0-9]{12,19}", digits) or not _luhn(digits):
        raise InvalidInput(_l("Enter a valid card number (12 to 19 digits)."))
    return digits


def _clean_number(raw: str) -> str:
    try:
        number = Decimal(raw.replace(",", ""))
    except InvalidOperation:
        raise InvalidInput(_l("Enter a number.")) from None
    if not number.is_finite() or abs(number) >= NUMBER_LIMIT:
        raise InvalidInput(_l("Enter a number between -999,999,999,999,999 and 999,999,999,999,999."))
    if number.as_tuple().exponent < -6:
        raise InvalidInput(_l("Use at most 6 decimal places."))
    return format(number.normalize(), "f")


def _clean_date(raw: str) -> str:
    try:
        if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", raw):
            raise ValueError
        return dt.date.fromisoformat(raw).isoformat()
    except ValueError:
        raise InvalidInput(_l("Enter a real date as YYYY-MM-DD.")) from None


def _clean_phone(raw: str) -> str:
    if not PHONE_RE.match(raw):
        raise InvalidInput(_l("A phone number has digits, spaces and + ( ) - . / only."))
    return raw


def clean_value(field: CustomField, raw) -> str:
    """The stored form of a posted value ("" for none), or InvalidInput."""
    raw = raw if isinstance(raw, str) else ""
    if field.type == "checkbox":
        return "1" if raw.strip() in ("1", "y", "on", "true", "yes") else ""
    multiline = field.type == "long_text"
    text = clean_text(raw, LONG_TEXT_MAX if multiline else TEXT_MAX, required=False,
                      multiline=multiline)
    if not text:
        return ""
    if field.type == "number":
        return _clean_number(text)
    if field.type == "date":
        return _clean_date(text)
    if field.type == "choice":
        if text not in choices_of(field):
            raise InvalidInput(_l("Choose one of the listed values."))
        return text
    if field.type == "email":
        return normalize_email(text)
    if field.type == "phone":
        return _clean_phone(text)
    if field.type == "card":
        return _clean_card(text)
    return text


def mask(field: CustomField, clear: str | None) -> str:
    """How an encrypted value is shown: the last four digits of a card, else dots."""
    if not clear:
        return ""
    if field.type == "card":
        return f"{MASK} {MASK} {MASK} {clear[-4:]}"
    return MASK


# -- values --------------------------------------------------------------------------

def _record_id(record) -> int:
    return record.id


@prepared(shape=("module",))
def _values_of(record_id, module):
    model = VALUE_TABLES[module]
    return model.select().where(getattr(model, _OWNER[module]) == record_id)


def _rows(module: str, record_id: int) -> dict[int, object]:
    return {row.field_id: row for row in _values_of.rows(record_id=record_id, module=module)}


def _clear(module: str, field: CustomField, row, record_id: int):
    """The clear value of a row ("" when empty); UNREADABLE if its seal does not open."""
    if row is None:
        return ""
    if row.sealed is None:
        return row.value
    try:
        return crypto.open_field(_TABLE_NAMES[module], record_id, field.key, row.sealed)
    except crypto.CannotDecrypt:
        return UNREADABLE


@dataclass(frozen=True)
class Shown:
    """One field as a page shows it to one person."""

    field: CustomField
    level: str  # hidden, read or edit
    display: str  # the clear value, or its mask for encrypted fields
    has_value: bool
    unreadable: bool = False
    can_reveal: bool = False

    @property
    def name(self) -> str:
        return self.field.name

    @property
    def encrypted(self) -> bool:
        return self.field.encrypted

    @property
    def editable(self) -> bool:
        return self.level == policy.EDIT


def _shown(module: str, field: CustomField, row, record_id: int, level: str, reveal: bool) -> Shown:
    clear = _clear(module, field, row, record_id)
    if clear is UNREADABLE:
        return Shown(field, level, "", True, unreadable=True)
    sealed = row is not None and row.sealed is not None
    if field.encrypted or sealed:
        return Shown(field, level, mask(field, clear), bool(clear), can_reveal=reveal and bool(clear))
    return Shown(field, level, clear, bool(clear))


def values_for(user: User, module: str, record) -> list[Shown]:
    """The record's fields as ``user`` may see them: agents by their role's
    field permissions, end users only the fields shown to end users (read-only
    on a ticket, editable on their own contact record)."""
    rows = _rows(module, _record_id(record))
    shown = []
    if policy.is_agent(user):
        for field in live_fields(module):
            level = policy.field_access(user, module, field.name)
            if level != policy.HIDDEN:
                reveal = policy.can_reveal(user, module, field.name)
                shown.append(_shown(module, field, rows.get(field.id), record.id, level, reveal))
        return shown
    level = policy.EDIT if module == "contacts" else policy.READ
    return [_shown(module, f, rows.get(f.id), record.id, level, False)
            for f in live_fields(module, public_only=True)]


def form_fields(user: User, module: str) -> list[Shown]:
    """Empty fields for a new record's form (the new-ticket form)."""
    fields = live_fields(module, public_only=not policy.is_agent(user))
    return [Shown(f, policy.EDIT, "", False) for f in fields]


def _posted(fields: list[CustomField], raw: dict) -> dict[int, str]:
    return {f.id: raw[f.name] for f in fields if f.name in raw}


def _allowed(user: User, module: str, record, as_owner: bool) -> list[CustomField]:
    """Fields ``user`` may change on the record; others posted are refused."""
    if as_owner:
        return live_fields(module, public_only=True)
    return [f for f in live_fields(module) if policy.field_access(user, module, f.name) == policy.EDIT]


def _is_owner(user: User, module: str, record) -> bool:
    if user.is_agent:
        return False
    return (record.requester_id if module == "tickets" else record.id) == user.id


def set_values(user: User, module: str, record, raw: dict, ip: str = "",
               creating: bool = False) -> dict[str, list]:
    """Validate and store posted ``cf_<key>`` values on ``record`` (inside the
    caller's transaction, if any). A posted field the user may not change is
    refused unless it keeps its value; an empty encrypted field keeps its value.
    Returns {key: [old, new]} with encrypted values masked."""
    as_owner = _is_owner(user, module, record)
    if not as_owner and not policy.is_agent(user):
        raise PermissionDenied("custom fields")
    every = live_fields(module)
    allowed = {f.id for f in _allowed(user, module, record, as_owner)}
    rows = _rows(module, record.id)
    errors: dict[str, str] = {}
    plan = []
    for field in every:
        row = rows.get(field.id)
        posted = field.name in raw
        if field.id not in allowed:
            if posted and _differs(module, field, row, record.id, raw[field.name]):
                raise PermissionDenied(f"{module}.{field.name}")
            continue
        if not posted and not (creating and field.required):
            continue
        try:
            value = clean_value(field, raw.get(field.name, ""))
        except InvalidInput as err:
            errors[field.key] = f"{_label(field)}: {err}"
            continue
        has_sealed = row is not None and row.sealed is not None
        if not value and field.encrypted and has_sealed:
            continue  # empty means "keep" for a value nobody sees in the form
        if not value and field.required:
            errors[field.key] = f"{_label(field)}: {_l('This field is required.')}"
            continue
        plan.append((field, row, value))
    if errors:
        raise FieldErrors(errors)
    actor = Actor.of(user, ip)
    changes = {}
    with audit.transaction():
        for field, row, value in plan:
            old = _clear(module, field, row, record.id)
            if old == value:
                continue
            _store(actor, module, field, row, record, value)
            if field.encrypted:
                changes[field.key] = [mask(field, old if isinstance(old, str) else MASK),
                                      mask(field, value)]
            else:
                changes[field.key] = [old, value]
    return changes


def _label(field: CustomField) -> str:
    """The field's label in the reader's language."""
    locale = get_locale()
    if locale is not None and locale.language == "zh" and field.label_zh:
        return field.label_zh
    return field.label


def _differs(module: str, field: CustomField, row, record_id: int, raw) -> bool:
    if field.encrypted and not (raw or "").strip():
        return False
    try:
        value = clean_value(field, raw)
    except InvalidInput:
        return True
    return _clear(module, field, row, record_id) != value


def _store(actor: Actor, module: str, field: CustomField, row, record, value: str) -> None:
    model = VALUE_TABLES[module]
    if field.encrypted and value:
        key_id, sealed = crypto.seal_field(_TABLE_NAMES[module], record.id, field.key, value)
        values = {"value": "", "sealed": sealed, "key_id": key_id}
    else:
        values = {"value": value, "sealed": None, "key_id": None}
    if row is None:
        audit.create(actor, model, field=field, **{_OWNER[module]: record.id}, **values)
    else:
        audit.update(actor, row, updated_at=utcnow(), **values)


# -- reveal ----------------------------------------------------------------------------

def _record_for(user: User, module: str, record_id: int):
    if module == "tickets":
        ticket = Ticket.get_or_none(Ticket.id == record_id, Ticket.deleted_at.is_null(),
                                    policy.ticket_filter(user))
        if ticket is None:
            raise NotFound(_l("No such ticket."))
        return ticket
    policy.require(user, "contacts:view")
    person = User.get_or_none(User.id == record_id, User.kind == "end_user", User.deleted_at.is_null())
    if person is None:
        raise NotFound(_l("No such person."))
    return person


def reveal(user: User, module: str, record_id: int, key: str, ip: str = "") -> tuple[CustomField, str]:
    """The clear value of one encrypted field, for a role that may reveal it.
    Each reveal is audited (who, which record, which field; never the value)."""
    if module not in VALUE_TABLES:
        raise NotFound(_l("No such field."))
    record = _record_for(user, module, record_id)
    policy.require(user, f"{module}:reveal")
    field = CustomField.get_or_none(CustomField.module == module, CustomField.key == key,
                                    CustomField.deleted_at.is_null())
    if field is None or not field.encrypted or not policy.visible(user, module, field.name):
        raise NotFound(_l("No such field."))
    if not policy.can_reveal(user, module, field.name):
        raise PermissionDenied(f"{module}:reveal")
    clear = _clear(module, field, _rows(module, record.id).get(field.id), record.id)
    if clear is UNREADABLE:
        raise Conflict(_l("This value cannot be decrypted: it does not belong to this record "
                          "or was altered. Nothing was revealed."))
    subject = record.requester_id if module == "tickets" else record.id
    audit.record(Actor.of(user, ip), "reveal", RECORD_TYPES[module], record.id, subject_id=subject,
                 details={"field": field.key})
    return field, clear


# -- background sealing, erasure, exports ------------------------------------------------

def seal_pending(batch: int = 200) -> int:
    """Seal clear values of fields marked encrypted after they had values, a
    batch at a time (resumable: what is left is simply found again). Returns
    values sealed; clears the field's ``encrypting`` mark when none is left."""
    done = 0
    for field in CustomField.select().where(CustomField.encrypting == True):  # noqa: E712
        module = field.module
        model = VALUE_TABLES[module]
        owner = _OWNER[module]
        rows = list(model.select().where(model.field == field.id, model.sealed.is_null())
                    .limit(batch))
        with audit.transaction():
            for row in rows:
                values = {"value": "", "sealed": None, "key_id": None}
                if row.value:
                    key_id, sealed = crypto.seal_field(_TABLE_NAMES[module], getattr(row, f"{owner}_id"),
                                                       field.key, row.value)
                    values = {"value": "", "sealed": sealed, "key_id": key_id}
                audit.update(audit.SYSTEM, row, action="encrypt", redact=True, **values)
                done += 1
            if len(rows) < batch:
                audit.update(audit.SYSTEM, field, encrypting=False)
    return done


def purge_deleted(actor: Actor, before) -> int:
    """Fields in the recycle bin since before ``before`` go for good, their
    values with them (ON DELETE CASCADE); one "purge" entry each."""
    ids = [f.id for f in CustomField.select(CustomField.id).where(CustomField.deleted_at < before)]
    return audit.purge(actor, CustomField, ids)


def destroy_values_of(actor: Actor, user: User) -> int:
    """Erasure: the person's contact values, and encrypted values on tickets
    they asked, are deleted (their audit copies are sealed under the person's
    key or were never recorded)."""
    count = 0
    with audit.transaction():
        for row in ContactFieldValue.select().where(ContactFieldValue.user == user.id):
            audit.delete(actor, row)
            count += 1
        mine = Ticket.select(Ticket.id).where(Ticket.requester == user.id)
        for row in TicketFieldValue.select().where(TicketFieldValue.ticket.in_(mine),
                                                   TicketFieldValue.sealed.is_null(False)):
            audit.delete(actor, row)
            count += 1
    return count


def export_values(user, module: str, record, may_reveal: bool) -> dict[str, str]:
    """{key: value} of a record for an export: encrypted values masked unless
    the exporter may reveal them. For the person's own export (``user`` not
    an agent) only the fields shown to end users."""
    rows = _rows(module, record.id)
    out = {}
    for field in live_fields(module, public_only=not policy.is_agent(user)):
        row = rows.get(field.id)
        clear = _clear(module, field, row, record.id)
        if clear is UNREADABLE:
            out[field.key] = "[unreadable]"
        elif field.encrypted and not may_reveal:
            out[field.key] = mask(field, clear)
        else:
            out[field.key] = clear
    return out


# -- list columns and export columns ----------------------------------------------------

def list_columns(user: User, module: str) -> list[CustomField]:
    """The fields a list may show: for an agent those their role sees; for an
    end user (whose lists hold only their own records) those shown to end users."""
    if not policy.is_agent(user):
        return live_fields(module, public_only=True) if policy.is_active(user) else []
    return [f for f in live_fields(module) if policy.visible(user, module, f.name)]


def column_values(user: User, module: str, record_ids: list[int], keys: tuple[str, ...],
                  pickable: list[CustomField] | None = None
                  ) -> tuple[list[CustomField], dict[int, dict[str, str]]]:
    """The picked fields (``keys``) the user sees (of ``pickable``, their
    ``list_columns`` when already read), and for each record of a list page
    {key: what the list shows}: encrypted values masked (revealing is done on
    the record's page, one value at a time, audited)."""
    pickable = list_columns(user, module) if pickable is None else pickable
    fields = [f for f in pickable if f.key in keys]
    shown: dict[int, dict[str, str]] = {rid: {} for rid in record_ids}
    if not fields or not record_ids:
        return fields, shown
    by_id = {f.id: f for f in fields}
    model = VALUE_TABLES[module]
    owner = getattr(model, _OWNER[module])
    for row in model.select().where(owner.in_(record_ids), model.field.in_(list(by_id))):
        field, record_id = by_id[row.field_id], getattr(row, f"{_OWNER[module]}_id")
        clear = _clear(module, field, row, record_id)
        if clear is UNREADABLE:
            shown[record_id][field.key] = "⚠"
        elif field.encrypted or row.sealed is not None:
            shown[record_id][field.key] = mask(field, clear)
        else:
            shown[record_id][field.key] = clear
    return fields, shown


def _export_column(module: str, field: CustomField, may_reveal: bool):
    """One custom field as an export column (desk.services.module_export.Spec):
    a subquery for the record's value; an encrypted one is masked, or opened
    for an exporter who may reveal it (the record id travels with the sealed
    text, which is bound to it)."""
    from peewee import Case
    from peewee import Value

    from desk.services.csv_export import Column
    from desk.services.module_export import Spec
    model = VALUE_TABLES[module]
    owner = getattr(model, _OWNER[module])
    record = Ticket if module == "tickets" else User
    table = _TABLE_NAMES[module]
    column = Column(f"cf_{field.key}", _label(field))
    if not field.encrypted:
        value = model.select(model.value).where(owner == record.id, model.field == field.id)
        return Spec(column, value, f"{module}.{field.name}")
    stored = Case(None, [(model.sealed.is_null(), Value("v").concat(model.value))],
                  Value("s").concat(model.sealed))
    tagged = model.select(record.id.cast("TEXT").concat(" ").concat(stored)).where(
        owner == record.id, model.field == field.id)  # "<record id> <v|s><value or sealed text>"

    def shown(cell):
        if not cell:
            return ""
        record_id, _, stored = cell.partition(" ")
        if len(stored) < 2:
            return ""
        if stored[0] == "v":  # a value not sealed yet (the sealing job is on its way)
            clear = stored[1:]
        else:
            try:
                clear = crypto.open_field(table, int(record_id), field.key, stored[1:])
            except crypto.CannotDecrypt:
                return "[unreadable]"
        return clear if may_reveal else mask(field, clear)
    return Spec(Column(column.key, column.label, convert=shown), tagged, f"{module}.{field.name}")


def export_columns(module: str):
    """The export column provider of ``module`` for module_export.register_columns."""
    def provider(exporter: User | None) -> list:
        # No exporter: the bulk export of everything (administrators only,
        # stored encrypted), which holds every value as it is.
        return [_export_column(module, f, exporter is None or policy.can_reveal(exporter, module, f.name))
                for f in live_fields(module)]
    return provider


def _register_export_columns() -> None:
    from desk.services import module_export
    for module in VALUE_TABLES:
        module_export.register_columns(module, export_columns(module))


_register_export_columns()
