"""Notifications (SPEC §7): one shape for every event, readable in email and parseable by machines.

Each message goes out with ``MessageStructure=json``: email subscribers get the text, SQS / Lambda /
HTTP(S) subscribers get one JSON object. The ``event`` and ``severity`` message attributes let a
subscription filter, e.g. email only ``severity=error``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

Event = Literal[
    "backup.failed",
    "backup.summary",
    "retention.summary",
    "instance.terminated",
    "policy.invalid",
    "rpo.violation",
    "report.daily",
    "copy.failed",
    "restore.failed",
]
Severity = Literal["info", "warning", "error"]

SUBJECT_LIMIT = 99
# SNS refuses a publish over 256 KiB (message, subject and attributes together); the margin covers the
# subject, the attributes and the request's own JSON.
SNS_MESSAGE_LIMIT = 256 * 1024
SIZE_MARGIN = 4 * 1024


@dataclass(frozen=True)
class Notification:
    event: Event
    severity: Severity
    subject: str
    summary: str
    payload: Mapping[str, Any] = field(default_factory=dict)
    table: Sequence[Sequence[str]] = ()  # first row is the header

    def subject_line(self) -> str:
        """SNS subjects must be ASCII, one line, under 100 characters."""
        ascii_only = self.subject.encode("ascii", "replace").decode().replace("\n", " ").strip()
        if len(ascii_only) <= SUBJECT_LIMIT:
            return ascii_only
        return ascii_only[: SUBJECT_LIMIT - 3] + "..."

    def text(self) -> str:
        lines = [self.summary]
        if self.table:
            lines += ["", *render_table(self.table)]
        lines += ["", f"event: {self.event} · severity: {self.severity}"]
        return "\n".join(lines)

    def document(self) -> dict[str, Any]:
        return {
            "event": self.event,
            "severity": self.severity,
            "subject": self.subject_line(),
            "text": self.text(),
            **self.payload,
        }

    def sns_message(self) -> str:
        """E-mail gets the text; every other protocol (SQS, Lambda, HTTP(S), email-json) the JSON document.

        SNS falls back to ``default`` for a protocol without its own key, so the document is carried once:
        a large report then still fits SNS's 256 KiB limit.
        """
        machine = json.dumps(self.document(), default=str, sort_keys=True)
        return json.dumps({"default": machine, "email": self.text()})


def render_table(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(str(row[col])) for row in rows) for col in range(len(rows[0]))]
    rendered = [
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    rendered.insert(1, "  ".join("-" * width for width in widths))
    return rendered


class NoticeLedger(Protocol):
    """Remembers which notices went out (amikeeper.idempotency.Idempotency is the one implementation)."""

    def first_time(self, key: str, now: datetime, memory: timedelta) -> bool:
        """True the first time ``key`` comes in the window of ``memory`` that holds ``now``."""
        ...


def condition_key(kind: str, parts: Iterable[str]) -> str:
    """A key for "the same condition": equal while the same things are wrong, whatever the counts or ids.

    The notice ledger sends a persistent condition once a day under this key.
    """
    joined = "|".join(sorted(set(parts)))
    return f"{kind}#{hashlib.sha256(joined.encode()).hexdigest()[:16]}"


def error_kind(error: str) -> str:
    """The stable part of an error text: the AWS error code in parentheses, else the text before a colon."""
    code = re.search(r"\(([A-Za-z0-9.]+)\)", error)
    return code.group(1) if code else error.split(":", 1)[0].strip()


def fit_to_sns(build: Callable[[int], Notification], total: int) -> Notification:
    """The notification listing as many entries as SNS accepts (all of them when they fit)."""

    def fits(limit: int) -> bool:
        return len(build(limit).sns_message().encode("utf-8")) <= SNS_MESSAGE_LIMIT - SIZE_MARGIN

    if fits(total):
        return build(total)
    low, high = 0, total  # fits(low) is assumed: an empty listing is a few hundred bytes
    while high - low > 1:
        middle = (low + high) // 2
        if fits(middle):
            low = middle
        else:
            high = middle
    return build(low)
