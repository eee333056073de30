"""Slowing down password guessing without locking anyone out or telling
accounts apart.

Failed sign-ins are counted per email address as typed (known or not: the
two are treated alike, so the answers never tell whether an account exists),
once for the pair (address, client address) and once for the address from
everywhere. Past a threshold the next attempt must wait, and the wait grows
with each further failure:

- from one client address: after ``per_client`` failures, 1, 2, 4 … seconds,
  up to the whole window. Only that client waits, so a stranger elsewhere
  cannot keep the owner out;
- from all client addresses (guessing spread over many): after ``per_account``
  failures, 1, 2, 4 … seconds but never more than ``max_wait`` — a short wait
  for the owner, never a lock.

An attempt refused for waiting is not a failure and does not lengthen the wait.
Counters live in the rate-limit store (shared by the workers of a machine, or
Redis), named by a keyed hash of the address, never the address itself.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from desk import crypto

PREFIX = "desk-signin"


@dataclass(frozen=True)
class Limits:
    per_client: int = 5
    per_account: int = 20
    window_seconds: int = 15 * 60
    max_wait_seconds: int = 30

    @classmethod
    def of(cls, config: dict) -> "Limits":
        return cls(per_client=int(config["LOGIN_ACCOUNT_MAX_FAILURES"]),
                   per_account=int(config["LOGIN_ACCOUNT_MAX_FAILURES_ALL"]),
                   window_seconds=int(config["LOGIN_ACCOUNT_WINDOW_MINUTES"]) * 60,
                   max_wait_seconds=int(config["LOGIN_MAX_WAIT_SECONDS"]))


class LoginThrottle:
    """The counters of one sign-in attempt: ``store`` is a ``limits`` storage."""

    def __init__(self, store, limits: Limits, email: str, ip: str):
        account = crypto.throttle_key((email or "").strip().lower())
        self.store = store
        self.counters = [
            (f"{PREFIX}/client/{account}/{crypto.throttle_key(ip or '-')}", limits.per_client,
             limits.window_seconds),
            (f"{PREFIX}/account/{account}", limits.per_account, limits.max_wait_seconds),
        ]
        self.window = limits.window_seconds

    def wait_seconds(self) -> int:
        """How long this attempt must wait before it is looked at (0: go ahead)."""
        now = time.time()
        waits = [0.0]
        for key, threshold, _cap in self.counters:
            failures = self.store.get(key)
            if failures >= threshold and self.store.get(f"{key}/wait/{failures}"):
                waits.append(self.store.get_expiry(f"{key}/wait/{failures}") - now)
        return max(0, int(max(waits) + 0.999))

    def failed(self) -> None:
        """Count a wrong password; past a threshold, start the next wait."""
        for key, threshold, cap in self.counters:
            failures = self.store.incr(key, self.window)
            if failures >= threshold:
                self.store.incr(f"{key}/wait/{failures}", _wait(failures - threshold, cap))

    def succeeded(self) -> None:
        """The right password from this client: its own count starts again."""
        self.store.clear(self.counters[0][0])


def _wait(step: int, cap: int) -> int:
    return max(1, min(2 ** min(step, 20), cap))
