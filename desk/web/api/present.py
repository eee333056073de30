"""Records as API responses: fields the caller may not see are left out,
as the pages leave them out (desk.policy decides)."""
from __future__ import annotations

from flask import url_for

from desk import policy
from desk.services import custom_fields
from desk.web.api import schemas as s

# What a requester sees of their own ticket on its page.
REQUESTER_TICKET_FIELDS = ("subject", "description", "status", "department")
CONTACT_FIELDS = ("name", "email", "phone", "mobile", "title", "timezone", "language")


def _ticket_fields(user) -> set[str]:
    if policy.is_agent(user):
        return {f for f, level in policy.field_levels(user, "tickets").items() if level != policy.HIDDEN}
    return set(REQUESTER_TICKET_FIELDS)


def person(user, who, *, contact: bool) -> s.PersonRef:
    """A person as a reference: contacts' fields as the role allows; agents
    by name; end users see names only."""
    if who is None:
        return None
    ref = s.PersonRef(id=who.id)
    if not contact or not policy.is_agent(user):
        ref.name = who.name
        return ref
    if policy.visible(user, "contacts", "name"):
        ref.name = who.name
    if policy.visible(user, "contacts", "email"):
        ref.email = who.email
    return ref


def ticket(user, t, model=s.Ticket, **extra) -> s.Ticket:
    fields = _ticket_fields(user)
    values = {"id": t.id, "created_at": t.created_at, "updated_at": t.updated_at, **extra}
    for name in ("subject", "description", "status", "priority"):
        if name in fields:
            values[name] = getattr(t, name)
    if "department" in fields:
        values["department"] = (s.DepartmentRef(id=t.department.id, name=t.department.name)
                                if t.department_id else None)
    if "requester" in fields:
        values["requester"] = person(user, t.requester, contact=True)
    if "assignee" in fields and policy.is_agent(user):
        values["assignee"] = person(user, t.assignee, contact=False) if t.assignee_id else None
    return model(**values)


def attachment(a) -> s.Attachment:
    return s.Attachment(id=a.id, filename=a.filename, size=a.size, content_type=a.content_type,
                        created_at=a.created_at,
                        download_url=url_for("api.download_attachment", attachment_id=a.id))


def comment(user, c) -> s.Comment:
    return s.Comment(id=c.id, author=person(user, c.author, contact=False), body=c.body,
                     public=c.is_public, created_at=c.created_at,
                     attachments=[attachment(a) for a in c.attachments])


def custom(user, module: str, record) -> dict:
    """Custom field values the user may see, by key; encrypted ones masked."""
    return {shown.field.key: shown.display for shown in custom_fields.values_for(user, module, record)}


def ticket_detail(user, t, comments, files) -> s.TicketDetail:
    return ticket(user, t, s.TicketDetail, comments=[comment(user, c) for c in comments],
                  attachments=[attachment(a) for a in files],
                  custom_fields=custom(user, "tickets", t))


def contact(user, who, custom_fields: dict | None = None) -> s.Contact:
    """A contact; ``custom_fields`` when a list already read them for all its rows."""
    values = {"id": who.id, "created_at": who.created_at, "updated_at": who.updated_at,
              "custom_fields": custom(user, "contacts", who) if custom_fields is None else custom_fields}
    for name in CONTACT_FIELDS:
        if policy.visible(user, "contacts", name):
            values[name] = getattr(who, name)
    return s.Contact(**values)
