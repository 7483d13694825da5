"""Publish/subscribe between gateway processes: Redis when `KEFU_REDIS_URL` is set, in-process otherwise.

Messages are small JSON-able dicts. Delivery is at-most-once (Redis pub/sub keeps nothing for a process that
is not listening): callers use it for pushes whose content is already persisted elsewhere.
"""

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

log = logging.getLogger(__name__)

Callback = Callable[[dict[str, Any]], Awaitable[None]]


class BrokerError(Exception):
    """The broker could not publish."""


class Broker(Protocol):
    async def start(self) -> None:
        """Connect and begin dispatching to subscribers."""

    async def close(self) -> None:
        """Stop dispatching and disconnect."""

    async def publish(self, topic: str, message: dict[str, Any]) -> None:
        """Send a message to every subscriber of `topic` in every process."""

    async def subscribe(self, topic: str, callback: Callback) -> None:
        """Call `callback` with every message published to `topic` from now on."""


class InProcessBroker:
    """One process: publishing calls the subscribers directly."""

    def __init__(self) -> None:
        self._subscribers: dict[str, list[Callback]] = {}

    async def start(self) -> None:
        """Nothing to connect."""

    async def close(self) -> None:
        """Forget the subscribers."""
        self._subscribers.clear()

    async def publish(self, topic: str, message: dict[str, Any]) -> None:
        """Dispatch to this process's subscribers; one failing subscriber does not stop the others."""
        # The same round trip through JSON as Redis, so both brokers hand subscribers equal, unshared data.
        data = json.loads(json.dumps(message))
        for callback in list(self._subscribers.get(topic, ())):
            try:
                await callback(data)
            except Exception:
                log.exception("subscriber of %s failed", topic)

    async def subscribe(self, topic: str, callback: Callback) -> None:
        """Register a callback."""
        self._subscribers.setdefault(topic, []).append(callback)


class RedisBroker:
    """Redis pub/sub (redis.asyncio): one connection listens for every topic, publishing uses a pool."""

    RETRY_S = 1.0

    def __init__(self, url: str, *, timeout_s: float = 5.0):
        self._url = url
        self._timeout = timeout_s
        self._subscribers: dict[str, list[Callback]] = {}
        self._client: Any = None
        self._pubsub: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()

    async def start(self) -> None:
        """Connect and start the listening task (it reconnects by itself)."""
        import redis.asyncio as redis

        self._client = redis.from_url(self._url, socket_connect_timeout=self._timeout, socket_timeout=self._timeout)
        self._reader = asyncio.create_task(self._listen(), name="redis-broker")

    async def close(self) -> None:
        """Stop listening and close the connections."""
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        if self._pubsub is not None:
            await self._pubsub.aclose()
        if self._client is not None:
            await self._client.aclose()

    async def publish(self, topic: str, message: dict[str, Any]) -> None:
        """Publish to every process; raises BrokerError when Redis cannot be reached."""
        if self._client is None:
            raise BrokerError("broker not started")
        try:
            await self._client.publish(topic, json.dumps(message, ensure_ascii=False))
        except Exception as exc:
            raise BrokerError(f"publishing to {topic} failed: {exc}") from exc

    async def subscribe(self, topic: str, callback: Callback) -> None:
        """Register a callback; the topic is subscribed on the live connection at once if there is one."""
        new = topic not in self._subscribers
        self._subscribers.setdefault(topic, []).append(callback)
        if new and self._pubsub is not None and self._subscribed.is_set():
            await self._pubsub.subscribe(topic)

    async def ready(self, timeout: float = 5.0) -> bool:
        """Whether the listening connection is subscribed (tests wait on it before publishing)."""
        try:
            await asyncio.wait_for(self._subscribed.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def _listen(self) -> None:
        while True:
            try:
                self._pubsub = self._client.pubsub(ignore_subscribe_messages=True)
                topics = list(self._subscribers) or ["kefu.noop"]
                await self._pubsub.subscribe(*topics)
                self._subscribed.set()
                while True:
                    message = await self._pubsub.get_message(timeout=1.0)
                    if message is None or message.get("type") != "message":
                        continue
                    await self._dispatch(message["channel"], message["data"])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._subscribed.clear()
                log.warning("redis broker connection lost (%s); reconnecting", exc)
                if self._pubsub is not None:
                    with contextlib.suppress(Exception):
                        await self._pubsub.aclose()
                    self._pubsub = None
                await asyncio.sleep(self.RETRY_S)

    async def _dispatch(self, channel: bytes | str, data: bytes | str) -> None:
        topic = channel.decode() if isinstance(channel, bytes) else channel
        try:
            message = json.loads(data)
        except ValueError:
            log.warning("ignoring a non-JSON message on %s", topic)
            return
        for callback in list(self._subscribers.get(topic, ())):
            try:
                await callback(message)
            except Exception:
                log.exception("subscriber of %s failed", topic)


def make_broker(redis_url: str | None) -> Broker:
    """Redis when a URL is configured (several gateway processes), else in-process (one)."""
    return RedisBroker(redis_url) if redis_url else InProcessBroker()
