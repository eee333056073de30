"""The API's request and response shapes (pydantic v2). The same classes
validate what comes in and generate the OpenAPI document."""
from __future__ import annotations

import datetime as dt
from typing import Annotated
from typing import Literal

from pydantic import AfterValidator
from pydantic import BaseModel
from pydantic import ConfigDict
from pydantic import Field

from desk.models.tickets import PRIORITIES
from desk.models.tickets import STATUSES
from desk.services.tickets import BODY_MAX
from desk.services.tickets import SUBJECT_MAX

Status = Literal[STATUSES]  # type: ignore[valid-type]
Priority = Literal[PRIORITIES]  # type: ignore[valid-type]
# Stored times are naive UTC; the API says so (RFC 3339 with "Z").
Time = Annotated[dt.datetime, AfterValidator(
    lambda v: v if v.tzinfo else v.replace(tzinfo=dt.timezone.utc))]


class Strict(BaseModel):
    """Requests: unknown fields are an error, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


class Out(BaseModel):
    """Responses: fields the caller may not see are left out entirely."""


# -- people ------------------------------------------------------------------

class PersonRef(Out):
    id: int
    name: str | None = None
    email: str | None = None


class Me(Out):
    id: int
    kind: Literal["agent", "end_user"]
    name: str
    email: str
    role: str | None = None
    permissions: list[str]
    token: TokenInfo


class TokenInfo(Out):
    prefix: str
    name: str
    read_only: bool
    expires_at: Time


class Contact(Out):
    id: int
    name: str | None = None
    email: str | None = None
    phone: str | None = None
    mobile: str | None = None
    title: str | None = None
    timezone: str | None = None
    language: str | None = None
    created_at: Time
    updated_at: Time
    custom_fields: dict[str, str] = Field(
        default_factory=dict, description="Custom field values the caller may see, by key "
        "(encrypted ones masked).")


class ContactList(Out):
    items: list[Contact]
    next_cursor: str | None


class ContactCreate(Strict):
    name: str = Field(min_length=1, max_length=200)
    email: str = Field(min_length=3, max_length=254)
    phone: str = Field(default="", max_length=50)
    mobile: str = Field(default="", max_length=50)
    title: str = Field(default="", max_length=200)
    timezone: str = Field(default="UTC", max_length=64)
    language: Literal["", "en", "zh_Hans"] = ""
    custom_fields: dict[str, str] | None = Field(
        default=None, description="Custom field values to set, by key (a field the caller "
        "may not edit is refused; an empty encrypted value keeps the stored one).")


class ContactUpdate(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    phone: str | None = Field(default=None, max_length=50)
    mobile: str | None = Field(default=None, max_length=50)
    title: str | None = Field(default=None, max_length=200)
    timezone: str | None = Field(default=None, max_length=64)
    language: Literal["", "en", "zh_Hans"] | None = None
    custom_fields: dict[str, str] | None = Field(
        default=None, description="Custom field values to set, by key (a field the caller "
        "may not edit is refused; an empty encrypted value keeps the stored one).")


class ContactQuery(Strict):
    q: str = Field(default="", max_length=200)
    cursor: str | None = Field(default=None, max_length=200)
    limit: int = Field(default=25, ge=1, le=100)


# -- tickets -------------------------------------------------------------------

class DepartmentRef(Out):
    id: int
    name: str


class Attachment(Out):
    id: int
    filename: str
    size: int
    content_type: str
    created_at: Time
    download_url: str


class Comment(Out):
    id: int
    author: PersonRef
    body: str
    public: bool
    created_at: Time
    attachments: list[Attachment]


class Ticket(Out):
    id: int
    subject: str | None = None
    description: str | None = None
    status: Status | None = None
    priority: Priority | None = None
    department: DepartmentRef | None = None
    requester: PersonRef | None = None
    assignee: PersonRef | None = None
    created_at: Time
    updated_at: Time
    custom_fields: dict[str, str] = Field(
        default_factory=dict, description="Custom field values the caller may see, by key "
        "(encrypted ones masked; the clear value through the field's reveal call).")


class TicketDetail(Ticket):
    comments: list[Comment]
    attachments: list[Attachment]


class TicketList(Out):
    items: list[Ticket]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last.")


class TicketQuery(Strict):
    """The desk list's filters (end users: `status` and `q` over their own tickets)."""

    status: Status | None = None
    priority: Priority | None = None
    department: int | None = Field(default=None, ge=1, le=2**31 - 1)
    assignee: str | None = Field(default=None, pattern=r"^(me|none|[1-9][0-9]{0,9})$")
    requester: str | None = Field(default=None, max_length=200)
    q: str | None = Field(default=None, max_length=200)
    sort: Literal["updated", "created", "oldest"] = "updated"
    view: Literal["default", "all"] = Field(
        default="all", description="`default`: the desk's default view (open, mine or unassigned in my departments).")
    cursor: str | None = Field(default=None, max_length=200)
    limit: int = Field(default=25, ge=1, le=100)


class TicketCreate(Strict):
    subject: str = Field(min_length=1, max_length=SUBJECT_MAX)
    description: str = Field(min_length=1, max_length=BODY_MAX)
    department_id: int | None = Field(default=None, ge=1, le=2**31 - 1)
    custom_fields: dict[str, str] | None = Field(
        default=None, description="Custom field values to set, by key (a field the caller "
        "may not edit is refused; an empty encrypted value keeps the stored one).")


class TicketUpdate(Strict):
    status: Status | None = None
    priority: Priority | None = None
    department_id: int | None = Field(default=None, ge=0, le=2**31 - 1,
                                      description="0 or null: no department.")
    assignee_id: int | None = Field(default=None, ge=0, le=2**31 - 1,
                                    description="0 or null: unassigned.")
    custom_fields: dict[str, str] | None = Field(
        default=None, description="Custom field values to set, by key (a field the caller "
        "may not edit is refused; an empty encrypted value keeps the stored one).")


class CommentCreate(Strict):
    body: str = Field(min_length=1, max_length=BODY_MAX)
    public: bool = Field(default=True, description="false: a private note (agents only).")


class Changed(Out):
    changed: list[str]
    ticket: Ticket


# -- errors ----------------------------------------------------------------------

class InvalidParam(Out):
    name: str
    reason: str


class Problem(Out):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str | None = None
    invalid_params: list[InvalidParam] | None = Field(default=None, alias="invalid-params")


Me.model_rebuild()


class Revealed(Out):
    """The clear value of one encrypted custom field (the reveal is audited)."""
    key: str
    value: str
