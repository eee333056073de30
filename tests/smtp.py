"""A real SMTP server (aiosmtpd) on loopback for tests, and a handler that
keeps what it receives."""
from __future__ import annotations

import contextlib
import email
import email.policy
import socket
import threading

from aiosmtpd.controller import Controller


class Collector:
    """aiosmtpd handler that keeps every envelope it accepts.

    ``rcpt_reply`` / ``data_reply``: answer RCPT / DATA with this instead of 250.
    """

    def __init__(self, rcpt_reply: str | None = None, data_reply: str | None = None):
        self.envelopes = []
        self.rcpt_reply = rcpt_reply
        self.data_reply = data_reply
        self.lock = threading.Lock()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.rcpt_reply:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.data_reply:
            return self.data_reply
        with self.lock:
            self.envelopes.append(envelope)
        return "250 Message accepted for delivery"

    def messages(self):
        return [email.message_from_bytes(e.content, policy=email.policy.default)
                for e in self.envelopes]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def smtp_server(handler: Collector, port: int | None = None, **kwargs):
    controller = Controller(handler, hostname="127.0.0.1", port=port or free_port(), **kwargs)
    controller.start()
    try:
        yield controller
    finally:
        controller.stop()
