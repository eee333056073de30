"""Realistic bench data for desk, built fast with bulk inserts.

    python bench/generate.py --url sqlite:///bench/out/s/desk.db --data-dir bench/out/s --scale 0.1

At scale 1: 20 departments, 200 agents, 100,000 end users, 1,000,000 tickets
with 3 comments each (3,000,000 comments), 1% of tickets with a small
attachment (a real file under <data-dir>/attachments/<2 chars>/<32 hex>, its
SHA-256 in the row), and 100,000 items in the recycle bin (a quarter tickets,
the rest comments), deleted 1-30 days ago, so inside the default 60-day
retention: the server's own scheduled purge leaves them alone, and the bench
purges them by running ``app.py purge`` with a shorter retention.
Every count scales linearly with ``--scale`` (departments at least 2, agents
at least 4), so an agent's default view holds about the same number of
tickets at every scale. Two things do NOT scale: the one heavy end user always
has 2,000 tickets (My Tickets page 40 exists at every scale), and one of that
user's tickets always has 10 comments (the ticket page scenario).

Names, subjects, descriptions and comments are in English and Chinese.
Every person shares ONE realistic argon2id password hash, made once by the
app's own crypto (desk.crypto.hash_password, default cost) so the bench can
sign in with a known password.

THE GENERATOR BYPASSES THE AUDIT LOG ON PURPOSE. It fabricates years of
history that never happened through the app, so there is nothing truthful to
audit; writing one audit entry per fabricated row through desk.audit would
also make generation take hours. It writes with plain SQL on peewee's
connection inside ``desk.models.base._audited_write`` set to True (the write
guard's ContextVar), and only here in bench/. The audit chain stays valid:
it simply starts empty, and everything the bench does afterwards through the
app (sign-ins, replies, the purge, the erasure, the export) is audited as usual.

Speed: rows go in transactions of 5,000 tickets with their comments and files,
by ``executemany`` on SQLite and ``COPY`` on PostgreSQL; the secondary indexes
of the big tables are dropped for the load and recreated at the end exactly as
the migrations made them (their SQL is read back from the database), and on
PostgreSQL the per-row foreign key triggers are skipped where the role may
(``session_replication_role``; the rows are consistent by construction).
It prints rows/s. At the end it writes <data-dir>/bench.json naming the ids the
bench uses.
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import hashlib
import io
import json
import os
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PASSWORD = "bench-password-2024"
HEAVY_TICKETS = 2000
THREAD_COMMENTS = 10
CHUNK = 5000  # tickets per transaction

EN_FIRST = ["James", "Mary", "Robert", "Patricia", "John", "Jennifer", "Michael", "Linda",
            "David", "Elizabeth", "William", "Barbara", "Richard", "Susan", "Joseph", "Jessica",
            "Thomas", "Sarah", "Charles", "Karen", "Daniel", "Nancy", "Matthew", "Lisa"]
EN_LAST = ["Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis",
           "Wilson", "Anderson", "Taylor", "Moore", "Jackson", "Martin", "Lee", "Thompson",
           "White", "Harris", "Clark", "Lewis", "Walker", "Hall", "Young", "King"]
ZH_LAST = ["王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙", "马", "朱",
           "胡", "郭", "何", "高", "林", "罗", "欧阳", "司马"]
ZH_FIRST = ["伟", "芳", "娜", "秀英", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰",
            "娟", "涛", "明", "超", "秀兰", "霞", "平", "刚", "桂英", "文博"]
DEPARTMENTS = ["Customer Support", "Billing 账务", "Technical Support 技术支持", "Sales",
               "Returns 退货", "Shipping", "Accounts 账户", "Enterprise", "Partners 合作伙伴",
               "Security", "Onboarding 入门", "Mobile App", "Web Store 网店", "Hardware",
               "Warranty 保修", "Logistics", "Marketing", "Compliance 合规", "Training",
               "VIP Desk 贵宾服务"]
EN_SUBJECTS = ["Cannot log in to my account", "Invoice {n} shows the wrong amount",
               "Order {n} has not arrived", "Refund for order {n}", "App crashes on start",
               "How do I change my shipping address?", "Password reset email never came",
               "Charged twice for subscription", "Printer driver fails to install",
               "Request for a copy of my data", "Damaged item in package {n}",
               "Two-factor code not accepted", "Upgrade plan question", "Export to CSV is empty",
               "Warranty claim for serial {n}", "Slow page loads since update"]
ZH_SUBJECTS = ["无法登录我的账户", "发票 {n} 金额错误", "订单 {n} 还没有到", "申请订单 {n} 退款",
               "应用启动时崩溃", "如何修改收货地址？", "没有收到重置密码邮件", "订阅被重复扣费",
               "打印机驱动安装失败", "请求获取我的个人数据副本", "包裹 {n} 中的商品损坏",
               "两步验证码无效", "关于升级套餐的问题", "导出的 CSV 文件是空的",
               "序列号 {n} 的保修申请", "更新后页面加载很慢"]
EN_BODIES = ["Hello, I have been trying this for two days and it still does not work. "
             "I followed the steps in the help article but nothing changed. Could you please "
             "have a look? Order reference {n}.",
             "Thanks for the quick reply. I tried what you suggested: cleared the cache, "
             "restarted the device and signed in again. Same result, see the screenshot.",
             "We have looked into this and found the cause. A fix has been applied to your "
             "account; please try again and let us know if the problem persists.",
             "Internal note: customer is on the legacy plan, escalate to billing if the "
             "refund is above the usual limit. Checked logs for request {n}."]
ZH_BODIES = ["您好，我已经尝试了两天，还是不行。我按照帮助文章里的步骤操作了，但没有任何变化。"
             "麻烦帮忙看一下？订单号 {n}。",
             "谢谢您的快速回复。我按您说的清除了缓存，重启了设备并重新登录，结果还是一样，请看截图。",
             "我们已经查明原因，并已为您的账户修复。请再试一次，如果问题仍然存在请告诉我们。",
             "内部备注：客户使用旧套餐，如果退款超过常规额度请转给账务部门。已检查请求 {n} 的日志。"]
STATUSES = ["closed"] * 6 + ["open"] * 3 + ["on_hold"]
PRIORITIES = ["normal"] * 12 + ["low"] * 3 + ["high"] * 4 + ["urgent"]

TABLE_COLUMNS = {
    "department": ("id", "name", "is_private", "created_at"),
    "user": ("id", "kind", "email", "name", "password_hash", "role_id", "phone", "mobile", "title",
             "timezone", "language", "signature", "is_active", "session_token", "created_at",
             "updated_at", "deleted_at", "deleted_by", "anonymized_at"),
    "agent_department": ("agent_id", "department_id"),
    "ticket": ("id", "subject", "description", "status", "priority", "department_id",
               "requester_id", "assignee_id", "created_at", "updated_at", "deleted_at", "deleted_by"),
    "comment": ("id", "ticket_id", "author_id", "body", "is_public", "created_at", "deleted_at",
                "deleted_by"),
    "attachment": ("id", "ticket_id", "comment_id", "uploader_id", "filename", "stored_name",
                   "content_type", "size", "sha256", "created_at", "deleted_at", "deleted_by"),
}


def sizes(scale: float) -> dict:
    return {
        "departments": max(2, round(20 * scale)),
        "agents": max(4, round(200 * scale)),
        "end_users": max(50, round(100_000 * scale)),
        "tickets": max(HEAVY_TICKETS + 500, round(1_000_000 * scale)),
        "recycled": round(100_000 * scale),
    }


class Writer:
    """Bulk inserts with plain SQL on peewee's connection (see the module doc)."""

    def __init__(self, database):
        from peewee import PostgresqlDatabase
        self.db = database
        self.pg = isinstance(database, PostgresqlDatabase)
        self.rows: dict[str, int] = {}

    def insert(self, table: str, rows: list[tuple]) -> None:
        if not rows:
            return
        columns = TABLE_COLUMNS[table]
        names = ", ".join(f'"{c}"' for c in columns)
        cursor = self.db.cursor()
        if self.pg:
            # COPY, the bulk insert of PostgreSQL; \N stands for NULL.
            buffer = io.StringIO()
            csv.writer(buffer).writerows([["\\N" if v is None else v for v in row] for row in rows])
            buffer.seek(0)
            cursor.copy_expert(f'COPY "{table}" ({names}) FROM STDIN WITH (FORMAT csv, NULL \'\\N\')', buffer)
        else:
            marks = ", ".join("?" for _ in columns)
            cursor.executemany(f'INSERT INTO "{table}" ({names}) VALUES ({marks})', rows)
        self.rows[table] = self.rows.get(table, 0) + len(rows)

    BIG = ("ticket", "comment", "attachment")

    def drop_indexes(self) -> None:
        """Secondary indexes of the big tables go during the load and come back,
        exactly as the migrations made them, at the end (a bulk load's usual trick)."""
        if self.pg:
            rows = self.db.execute_sql(
                "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() "
                "AND tablename = ANY(%s) AND indexname NOT LIKE '%%_pkey'", (list(self.BIG),)).fetchall()
        else:
            rows = self.db.execute_sql(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "
                f"AND tbl_name IN ({', '.join('?' for _ in self.BIG)})", self.BIG).fetchall()
        self.indexes = [sql for _, sql in rows]
        for name, _ in rows:
            self.db.execute_sql(f'DROP INDEX "{name}"')

    def create_indexes(self) -> None:
        for sql in self.indexes:
            self.db.execute_sql(sql)

    def finish(self) -> None:
        self.create_indexes()
        from desk import textindex
        textindex.rebuild()  # the SQLite text index, over the rows loaded around desk.audit
        if self.pg:
            for table in ("department", "user", "ticket", "comment", "attachment"):
                self.db.execute_sql(f"SELECT setval(pg_get_serial_sequence('\"{table}\"', 'id'), "
                                    f"(SELECT COALESCE(MAX(id), 1) FROM \"{table}\"))")
            self.db.execute_sql("ANALYZE")  # what autovacuum would do after a bulk load


def ts(value: dt.datetime) -> str:
    return value.isoformat(" ", "microseconds")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="database URL (sqlite:/// or postgresql://)")
    parser.add_argument("--data-dir", required=True, help="instance folder (keys, attachments)")
    parser.add_argument("--scale", type=float, default=0.01, choices=(0.01, 0.1, 1.0))
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)

    os.environ.pop("DESK_DATABASE_URL", None)
    from desk import create_app
    from desk import crypto
    from desk.db import db
    from desk.migrations import migrate
    from desk.models import Role
    from desk.models import Ticket
    from desk.models.base import _audited_write

    data_dir = Path(args.data_dir)
    app = create_app({"DATA_DIR": str(data_dir), "DATABASE_URL": args.url})
    n = sizes(args.scale)
    rng = random.Random(args.seed)
    with app.app_context():
        db.connect(reuse_if_open=True)
        migrate(db.obj)
        if Ticket.select().exists():
            print("generate: the database already holds tickets; use a fresh one", file=sys.stderr)
            return 2
        t_hash = time.perf_counter()
        password_hash = crypto.hash_password(PASSWORD)
        t_hash = time.perf_counter() - t_hash
        roles = {r.name: r.id for r in Role.select()}
        writer = Writer(db.obj)
        if writer.pg:
            # The rows are consistent by construction: skip the per-row foreign key
            # triggers during the load where the role may (superuser); else keep them.
            try:
                with db.atomic():
                    db.execute_sql("SET session_replication_role = replica")
            except Exception:  # noqa: BLE001
                pass
        else:
            db.execute_sql("PRAGMA synchronous=OFF")
            db.execute_sql("PRAGMA cache_size=-200000")
        token = _audited_write.set(True)  # the write guard: see the module doc
        started = time.perf_counter()
        with db.atomic():
            writer.drop_indexes()
        try:
            meta = _generate(writer, rng, n, password_hash, roles, data_dir, db)
        finally:
            _audited_write.reset(token)
        with db.atomic():
            writer.finish()
        if writer.pg:
            db.execute_sql("SET session_replication_role = DEFAULT")
        else:
            db.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        elapsed = time.perf_counter() - started
        db.close()
    total = sum(writer.rows.values())
    meta.update(scale=args.scale, url_kind="postgresql" if writer.pg else "sqlite",
                password=PASSWORD, rows=writer.rows, seconds=round(elapsed, 2),
                rows_per_second=round(total / elapsed), password_hash_seconds=round(t_hash, 3))
    (data_dir / "bench.json").write_text(json.dumps(meta, indent=2))
    for table, count in writer.rows.items():
        print(f"  {table:17} {count:>10,} rows")
    print(f"generate: {total:,} rows in {elapsed:.1f}s = {total / elapsed:,.0f} rows/s "
          f"({meta['url_kind']}, scale {args.scale}, {meta['files']} files)")
    return 0


def _name(rng: random.Random) -> str:
    if rng.random() < 0.5:
        return f"{rng.choice(EN_FIRST)} {rng.choice(EN_LAST)}"
    return rng.choice(ZH_LAST) + rng.choice(ZH_FIRST)


def _text(rng: random.Random, templates_en, templates_zh, number: int) -> str:
    source = templates_en if rng.random() < 0.5 else templates_zh
    return rng.choice(source).format(n=number)


def _generate(w: Writer, rng: random.Random, n: dict, password_hash: str, roles: dict,
              data_dir: Path, db) -> dict:
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    two_years = 730 * 86400

    def token() -> str:
        return rng.getrandbits(192).to_bytes(24, "big").hex()

    # -- departments, agents, end users -------------------------------------
    with db.atomic():
        w.insert("department", [(i, DEPARTMENTS[(i - 1) % 20] + ("" if i <= 20 else f" {i}"),
                                 False, ts(now - dt.timedelta(days=800))) for i in range(1, n["departments"] + 1)])
        users = []
        agent_ids = list(range(1, n["agents"] + 1))
        for i in agent_ids:
            role = roles["Administrator"] if i == 1 else roles["Agent"]
            email = "admin@bench.example" if i == 1 else f"agent{i}@bench.example"
            created = ts(now - dt.timedelta(days=800 - i % 60))
            users.append((i, "agent", email, _name(rng), password_hash, role, "", "",
                          "Support agent", "UTC", "", "", True, token(), created, created,
                          None, None, None))
        heavy_id = n["agents"] + 1
        user_names: dict[int, str] = {}
        first_user, last_user = heavy_id, heavy_id + n["end_users"] - 1
        for i in range(first_user, last_user + 1):
            created = ts(now - dt.timedelta(seconds=rng.randrange(two_years + 86400 * 30)))
            if i == heavy_id:
                name, email, phone = "Margaret Thornton", "heavy@bench.example", "+44 20 7946 0958"
            else:
                name, email = _name(rng), f"customer{i}@bench.example"
                phone = f"+1 555 {rng.randrange(10**7):07d}" if rng.random() < 0.4 else ""
            user_names[i] = name
            users.append((i, "end_user", email, name, password_hash, None, phone, "", "", "UTC",
                          "zh_Hans" if rng.random() < 0.3 else "", "", True, token(), created,
                          created, None, None, None))
            if len(users) >= 20_000:
                w.insert("user", users)
                users = []
        w.insert("user", users)
        # Every agent belongs to one department, every third one to a second.
        depts = n["departments"]
        members: dict[int, list[int]] = {d: [] for d in range(1, depts + 1)}
        links = []
        for a in agent_ids[1:]:
            mine = {1 + (a % depts)}
            if a % 3 == 0:
                mine.add(1 + ((a + 1) % depts))
            for d in sorted(mine):
                links.append((a, d))
                members[d].append(a)
        w.insert("agent_department", links)
    bench_agent = 2  # an "Agent" role member of department 1 + (2 % depts)

    # -- which tickets are special -------------------------------------------
    total = n["tickets"]
    stride = total // HEAVY_TICKETS
    heavy = {i * stride + 7 for i in range(HEAVY_TICKETS)}  # ticket indexes (0-based)
    thread_ticket = min(heavy)  # the heavy user's ticket with 10 comments
    others = [i for i in range(total) if i not in heavy]
    recycled = n["recycled"]
    picked = rng.sample(others, min(len(others), recycled))
    recycled_tickets = set(picked[: recycled // 4])
    recycled_comment_on = set(picked[recycled // 4:])
    attached = set(rng.sample(range(total), max(1, total // 100)))
    # The agent's reply target: open, in the bench agent's department, assigned to them.
    reply_ticket = next(i for i in others if i not in recycled_tickets and i not in recycled_comment_on)
    bench_dept = 1 + (bench_agent % depts)

    # -- tickets, comments, attachments --------------------------------------
    comment_id = attachment_id = 0
    files = 0
    att_dir = data_dir / "attachments"
    for start in range(0, total, CHUNK):
        tickets, comments, attachments = [], [], []
        for idx in range(start, min(total, start + CHUNK)):
            tid = idx + 1
            if idx in heavy:
                requester = heavy_id
            else:
                requester = rng.randrange(first_user + 1, last_user + 1)
            created_dt = now - dt.timedelta(seconds=rng.randrange(86400 * 40, two_years))
            status, priority = rng.choice(STATUSES), rng.choice(PRIORITIES)
            dept = None if rng.random() < 0.05 else rng.randrange(1, depts + 1)
            pool = members.get(dept) or agent_ids[1:]
            assignee = rng.choice(pool) if rng.random() < 0.8 else None
            if idx == reply_ticket:
                status, dept, assignee = "open", bench_dept, bench_agent
            description = _text(rng, EN_BODIES[:1], ZH_BODIES[:1], tid)
            if rng.random() < 0.3:  # a signature: the requester's name in the text
                description += f"\n\n{user_names[requester]}"
            subject = _text(rng, EN_SUBJECTS, ZH_SUBJECTS, 100000 + tid)
            count = THREAD_COMMENTS if idx == thread_ticket else 3
            when = created_dt
            first_comment = comment_id + 1
            for c in range(count):
                comment_id += 1
                when = when + dt.timedelta(seconds=rng.randrange(600, 86400 * 3))
                agent = assignee or rng.choice(agent_ids[1:])
                if idx == thread_ticket:
                    author, public, body = (requester, True, EN_BODIES[1]) if c % 2 == 0 else \
                        (agent, True, EN_BODIES[2])
                elif c == 0:
                    author, public, body = requester, True, _text(rng, EN_BODIES[1:2], ZH_BODIES[1:2], tid)
                elif c == 1:
                    author, public, body = agent, True, _text(rng, EN_BODIES[2:3], ZH_BODIES[2:3], tid)
                elif rng.random() < 0.25:
                    author, public, body = agent, False, _text(rng, EN_BODIES[3:], ZH_BODIES[3:], tid)
                else:
                    author, public, body = requester, True, _text(rng, EN_BODIES[1:2], ZH_BODIES[1:2], tid)
                deleted = None
                deleted_by = None
                if c == 2 and idx in recycled_comment_on:
                    deleted = ts(now - dt.timedelta(seconds=rng.randrange(86400, 86400 * 30)))
                    deleted_by = rng.choice(agent_ids)
                comments.append((comment_id, tid, author, body, public, ts(when), deleted, deleted_by))
            updated_dt = min(when, now)
            t_deleted = t_deleted_by = None
            if idx in recycled_tickets:
                t_deleted = ts(now - dt.timedelta(seconds=rng.randrange(86400, 86400 * 30)))
                t_deleted_by = rng.choice(agent_ids)
            tickets.append((tid, subject, description, status, priority, dept, requester, assignee,
                            ts(created_dt), ts(updated_dt), t_deleted, t_deleted_by))
            if idx in attached:
                attachment_id += 1
                on_comment = rng.random() < 0.5
                content = _attachment_body(rng, tid)
                stored = rng.getrandbits(128).to_bytes(16, "big").hex()
                folder = att_dir / stored[:2]
                folder.mkdir(parents=True, exist_ok=True)
                (folder / stored).write_bytes(content)
                files += 1
                attachments.append((attachment_id, tid, first_comment if on_comment else None,
                                    requester, f"log-{tid}.txt" if rng.random() < 0.5 else f"截图-{tid}.txt",
                                    stored, "text/plain", len(content),
                                    hashlib.sha256(content).hexdigest(),
                                    ts(created_dt), None, None))
        with db.atomic():
            w.insert("ticket", tickets)
            w.insert("comment", comments)
            w.insert("attachment", attachments)
    # An ordinary end user with a handful of tickets (the query-count comparison).
    small = db.execute_sql(
        'SELECT requester_id, COUNT(*) FROM "ticket" WHERE deleted_at IS NULL AND requester_id <> %s '
        'GROUP BY requester_id ORDER BY ABS(COUNT(*) - 5), requester_id LIMIT 1'
        % int(heavy_id)).fetchone()
    return {
        "heavy_user_id": heavy_id, "heavy_email": "heavy@bench.example",
        "admin_email": "admin@bench.example",
        "agent_id": bench_agent, "agent_email": f"agent{bench_agent}@bench.example",
        "agent_department": bench_dept,
        "thread_ticket_id": thread_ticket + 1, "reply_ticket_id": reply_ticket + 1,
        "small_user_id": small[0], "small_user_tickets": small[1], "recycled_items": recycled,
        "recycled_tickets": len(recycled_tickets), "recycled_comments": len(recycled_comment_on),
        "files": files, "sizes": n,
    }


def _attachment_body(rng: random.Random, tid: int) -> bytes:
    lines = [f"2024-05-{1 + i % 28:02d} 10:{i % 60:02d}:00 INFO request {tid}-{i} handled in "
             f"{rng.randrange(5, 900)} ms 处理完成" for i in range(rng.randrange(8, 40))]
    return ("\n".join(lines) + "\n").encode()


if __name__ == "__main__":
    sys.exit(main())
