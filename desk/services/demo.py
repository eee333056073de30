"""Sample data: a small, realistic help center in English and Chinese, made
through the same services people use, so its audit history is real."""
from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass
from dataclasses import field

from desk import audit
from desk import crypto
from desk.errors import Conflict
from desk.i18n import lazy_gettext as _l
from desk.models import Role
from desk.models import Ticket
from desk.models import User
from desk.services import attachments as files
from desk.services import departments
from desk.services import erasure
from desk.services import people
from desk.services import recycle_bin
from desk.services import tickets

DEPARTMENTS = ("Support", "Billing", "技术支持")
AGENTS = (  # name, email, built-in role, departments
    ("Ada Admin", "admin@demo.example", "Administrator", ("Support", "Billing", "技术支持")),
    ("Mia Agent", "mia@demo.example", "Agent", ("Support", "技术支持")),
    ("李娜", "li.na@demo.example", "Agent", ("技术支持", "Billing")),
    ("Leo Light", "leo@demo.example", "Light Agent", ("Support",)),
)
CUSTOMERS = (
    ("Ann Customer", "ann@customer.example"),
    ("Bob Buyer", "bob@customer.example"),
    ("张伟", "zhang.wei@customer.example"),
    ("王芳", "wang.fang@customer.example"),
    ("Carla Díaz", "carla@customer.example"),
)
# requester, department, subject, description, status, priority, assignee, thread
# (thread: author ("agent"/"customer"), public?, body, attachment name or None)
TICKETS = (
    ("Ann Customer", "Support", "Printer shows a red light",
     "Since this morning the printer on floor 2 blinks red. Photo attached.",
     "open", "high", "Mia Agent",
     (("agent", True, "Thanks Ann, please switch it off and on again.", None),
      ("agent", False, "Second time this month; ask facilities about a service visit.", None),
      ("customer", True, "Still red after a restart, here is the display.", "display.png"))),
    ("Bob Buyer", "Billing", "Invoice 2024-113 charged twice",
     "My card was charged twice for invoice 2024-113. Statement attached.",
     "on_hold", "urgent", "李娜",
     (("agent", True, "We asked the bank; we will write as soon as they answer.", None),
      ("agent", False, "Refund requested from the payment provider, ref R-5531.", "refund-request.txt"))),
    ("张伟", "技术支持", "无法登录账户",
     "输入密码后页面一直在加载，换了浏览器也一样。",
     "closed", "normal", "李娜",
     (("agent", True, "您好，我们已经修复了登录问题，请再试一次。", None),
      ("customer", True, "可以登录了，谢谢！", None))),
    ("王芳", "技术支持", "发票抬头需要修改",
     "请把发票抬头改为公司全称，附件是营业执照信息。",
     "open", "low", None,
     (("customer", True, "补充：税号也需要更新。", "公司信息.txt"),)),
    ("Carla Díaz", "Support", "How do I export my data?",
     "Where can I download everything you hold about me?",
     "closed", "low", "Mia Agent",
     (("agent", True, "Open My Info and choose 'Download my data'; you get a ZIP.", None),)),
    ("Ann Customer", "Billing", "Change of billing address",
     "We moved; the new address is in the attached note.",
     "on_hold", "normal", None,
     (("agent", False, "Waiting for the signed form before changing it.", None),)),
)

FIRST_FILES = {"Printer shows a red light": "red-light.png",
               "Invoice 2024-113 charged twice": "statement.txt",
               "发票抬头需要修改": "营业执照.txt",
               "Change of billing address": "new-address.txt"}


@dataclass
class DemoReport:
    """What was made, and the passwords (shown once, never stored in clear)."""

    accounts: list[tuple[str, str, str, str]] = field(default_factory=list)  # name, email, role, password
    tickets: int = 0
    comments: int = 0
    files: int = 0
    recycled: int = 0
    erased: int = 0


def has_data() -> bool:
    """True when the instance holds people or tickets (real data to protect)."""
    return User.select().exists() or Ticket.select().exists()


def tiny_png() -> bytes:
    """A real 2x2 PNG, built here so the demo needs no image files."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    header = struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xd9\x2d\x20\xd9\x2d\x20" * 2)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def _upload(name: str) -> files.Upload:
    if name.endswith(".png"):
        return files.Upload(filename=name, stream=io.BytesIO(tiny_png()), content_type="image/png")
    body = f"{name}\n\nSample file made by `desk demo`.\n示例文件。\n".encode()
    return files.Upload(filename=name, stream=io.BytesIO(body), content_type="text/plain")


def _password() -> str:
    return crypto.new_token(12)


def _staff(report: DemoReport) -> dict[str, User]:
    made: dict[str, User] = {}
    for name, email, role, _ in AGENTS:
        password = _password()
        if role == "Administrator":
            user = people.create_admin(audit.SYSTEM, name, email, password)
        else:
            user = people.create_agent(audit.SYSTEM, name, email, password,
                                       Role.get(Role.name == role))
        made[name] = user
        report.accounts.append((name, email, role, password))
    return made


def _departments(admin: User, staff: dict[str, User]) -> dict[str, int]:
    ids = {name: departments.create(admin, name).id for name in DEPARTMENTS}
    for name, _, _, member_of in AGENTS:
        for dept in member_of:
            departments.add_member(admin, ids[dept], staff[name].id)
    return ids


def _customers(report: DemoReport) -> dict[str, User]:
    made = {}
    for name, email in CUSTOMERS:
        password = _password()
        made[name] = people.sign_up(name, email, password)
        report.accounts.append((name, email, "End user", password))
    return made


def _tickets(report: DemoReport, admin: User, staff: dict, customers: dict, dept_ids: dict) -> list:
    made = []
    for requester, dept, subject, description, status, priority, assignee, thread in TICKETS:
        customer = customers[requester]
        first = [_upload(FIRST_FILES[subject])] if subject in FIRST_FILES else []
        ticket = tickets.submit(customer, subject, description, dept_ids[dept], first)
        report.files += len(first)
        worker = staff[assignee] if assignee else admin
        tickets.update_ticket(admin, ticket.id, priority=priority,
                              assignee_id=staff[assignee].id if assignee else None)
        for author, public, body, attachment in thread:
            writer = customer if author == "customer" else worker
            uploads = [_upload(attachment)] if attachment else []
            report.comments += 1
            report.files += len(uploads)
            tickets.reply(writer, ticket.id, body, public, uploads)
        if status != "open":
            tickets.update_ticket(worker, ticket.id, status=status)
        made.append(ticket)
        report.tickets += 1
    return made


def _recycle_and_erase(report: DemoReport, admin: User, made: list) -> None:
    """A ticket, a comment and a contact in the recycle bin; one person erased."""
    spam = tickets.submit(people.sign_up("Sam Spammer", "sam@spam.example", _password()),
                          "Cheap watches", "Best prices on watches, click here.")
    tickets.delete_ticket(admin, spam.id)
    note = tickets.reply(admin, made[0].id, "Duplicate note, please ignore.", False)
    tickets.delete_comment(admin, made[0].id, note.id)
    recycle_bin.delete_person(admin, spam.requester_id)
    report.recycled = 3
    gone = people.sign_up("Eve Erased", "eve@customer.example", _password())
    tickets.submit(gone, "Please delete my account", "I no longer use the service; erase my data.")
    erasure.request_by_person(gone)
    erasure.start(admin, gone.id, erasure.ANONYMIZE, erasure.placeholder(gone))
    report.erased = 1


def fill() -> DemoReport:
    """Fill an empty instance with the sample help center. Refuses (Conflict)
    when there are people or tickets already, so real data is never mixed in."""
    if has_data():
        raise Conflict(_l("This instance already has data; the demo fills only an empty one."))
    report = DemoReport()
    staff = _staff(report)
    admin = staff[AGENTS[0][0]]
    dept_ids = _departments(admin, staff)
    customers = _customers(report)
    made = _tickets(report, admin, staff, customers, dept_ids)
    _recycle_and_erase(report, admin, made)
    return report
