"""Peewee tables only. ALL_MODELS is in dependency order (create order)."""
from desk.models.audit import AuditEntry
from desk.models.audit import AuditHead
from desk.models.base import BaseModel
from desk.models.base import utcnow
from desk.models.compliance import Breach
from desk.models.compliance import DataSubjectRequest
from desk.models.compliance import NoticeConsent
from desk.models.compliance import PrivacyNotice
from desk.models.fields import ContactFieldValue
from desk.models.fields import CustomField
from desk.models.fields import KeyRotation
from desk.models.fields import StoredSecret
from desk.models.fields import TicketFieldValue
from desk.models.people import AgentDepartment
from desk.models.people import Department
from desk.models.people import Role
from desk.models.people import User
from desk.models.privacy import BulkExport
from desk.models.privacy import EmailChangeRequest
from desk.models.privacy import ErasureRequest
from desk.models.sessions import BrowserSession
from desk.models.system import FileRemoval
from desk.models.system import Lease
from desk.models.system import MailMessage
from desk.models.system import RecordKey
from desk.models.system import RegionJournal
from desk.models.system import RegionState
from desk.models.system import Setting
from desk.models.system import SubjectKey
from desk.models.tickets import Attachment
from desk.models.tickets import Comment
from desk.models.tickets import SubmittedForm
from desk.models.tickets import Ticket
from desk.models.tokens import ApiToken
from desk.models.tokens import ApiTokenUse

ALL_MODELS = [
    Department,
    Role,
    User,
    AgentDepartment,
    Ticket,
    Comment,
    Attachment,
    AuditEntry,
    AuditHead,
    Setting,
    SubjectKey,
    Lease,
    MailMessage,
    EmailChangeRequest,
    RecordKey,
    FileRemoval,
    ErasureRequest,
    CustomField,
    TicketFieldValue,
    ContactFieldValue,
    StoredSecret,
    KeyRotation,
    ApiToken,
    ApiTokenUse,
    BrowserSession,
    BulkExport,
    RegionState,
    RegionJournal,
    DataSubjectRequest,
    SubmittedForm,
    Breach,
    PrivacyNotice,
    NoticeConsent,
]

__all__ = [m.__name__ for m in ALL_MODELS] + ["ALL_MODELS", "BaseModel", "utcnow"]
