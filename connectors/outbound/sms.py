"""SMS: one interface for the operator's SMS gateway; the demo implementation records messages instead.

A notice reaches a customer known only by phone number as one SMS: the notice text plus its confirm-page
link (the customer answers by tapping it, since the demo cannot receive SMS replies).
"""

import json
import threading
from pathlib import Path
from typing import Protocol

from common.channels import Reply
from common.db import utcnow

CHANNEL = "sms"


class SmsGateway(Protocol):
    def send(self, phone: str, text: str) -> None:
        """Hand one text message to the SMS gateway."""


class RecordingSms:
    """Appends every message to a JSON-lines file (var/outbox/sms.jsonl): what a real gateway would send."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()

    def send(self, phone: str, text: str) -> None:
        """Record the message."""
        line = json.dumps({"at": utcnow().isoformat(), "phone": phone, "text": text}, ensure_ascii=False)
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as out:
                out.write(line + "\n")

    def sent(self) -> list[dict[str, str]]:
        """Everything recorded so far (for tests and the demo)."""
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip()]


class SmsSender:
    """`Delivery`'s sender for "sms": text plus the confirm link, one message per reply."""

    def __init__(self, gateway: SmsGateway):
        self._gateway = gateway

    async def send(self, source_id: str, replies: list[Reply]) -> None:
        """Send persisted replies to the phone number `source_id`."""
        import anyio.to_thread

        for reply in replies:
            text = reply.text if not reply.url else f"{reply.text}\n一键确认：{reply.url}"
            await anyio.to_thread.run_sync(self._gateway.send, source_id, text)
