"""Pushing messages to customers outside a request/response turn: agent replies, notices, late bot answers.

The message is always persisted first (the `message` table is the outbox); delivery is a best-effort push
on top, so a channel that cannot push (REST) or a push that fails loses nothing: the customer's client
fetches what it missed by message id. Each channel registers one sender; the process that produced the
message calls it once (the web widget's sender fans out over the broker to whichever replica holds the
socket; WeChat's calls the customer-service API).
"""

import asyncio
import logging
from typing import Protocol

import anyio.from_thread

from common.channels import Reply

log = logging.getLogger(__name__)


class ChannelSender(Protocol):
    async def send(self, source_id: str, replies: list[Reply]) -> None:
        """Deliver already persisted replies to the customer known to the channel as `source_id`."""


class Delivery:
    """Channel name -> sender; channels without a sender are pull-only."""

    def __init__(self) -> None:
        self._senders: dict[str, ChannelSender] = {}

    def register(self, channel: str, sender: ChannelSender) -> None:
        """Make `channel` push-capable."""
        self._senders[channel] = sender

    async def deliver(self, channel: str, source_id: str, replies: list[Reply]) -> None:
        """Push to the customer now if their channel can; failures are logged, the outbox keeps the message."""
        sender = self._senders.get(channel)
        if sender is None or not replies:
            return
        try:
            await sender.send(source_id, replies)
        except Exception:
            log.exception(
                "pushing %d message(s) to %s:%s failed; the client will fetch them", len(replies), channel, source_id
            )

    def deliver_from_thread(self, channel: str, source_id: str, replies: list[Reply]) -> None:
        """The same, from a sync view running in FastAPI's threadpool (never from the event loop itself)."""
        if channel not in self._senders or not replies:
            return
        anyio.from_thread.run(self.deliver, channel, source_id, replies)

    def deliver_soon(self, channel: str, source_id: str, replies: list[Reply]) -> "asyncio.Task[None] | None":
        """Schedule a push from async code without waiting for it."""
        if channel not in self._senders or not replies:
            return None
        return asyncio.get_running_loop().create_task(self.deliver(channel, source_id, replies))
