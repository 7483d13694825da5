"""The widget sockets (and long-poll waiters) held by this process, keyed by visitor.

Every push goes through the broker, so whichever gateway process holds a visitor's socket delivers it.
"""

import asyncio
import logging
from collections import defaultdict
from typing import Any, Protocol

from common.broker import Broker

log = logging.getLogger(__name__)

TOPIC = "kefu.webchat.deliver"
SEND_TIMEOUT_S = 10.0


class Socket(Protocol):
    async def send_json(self, data: Any, mode: str = "text") -> None: ...


class Connection:
    """One open widget socket; sends are serialised because several tasks write to it."""

    def __init__(self, socket: Socket, visitor: str):
        self.socket = socket
        self.visitor = visitor
        self.last_acked = 0
        self.open = True
        self._lock = asyncio.Lock()

    async def send(self, frame: dict[str, Any]) -> bool:
        """Send a frame; False (and the connection marked closed) if the socket is gone."""
        if not self.open:
            return False
        async with self._lock:
            try:
                await asyncio.wait_for(self.socket.send_json(frame), SEND_TIMEOUT_S)
                return True
            except Exception:
                self.open = False
                return False


class Hub:
    """Local sockets by visitor, fed by the broker."""

    def __init__(self, broker: Broker):
        self.broker = broker
        self._sockets: dict[str, set[Connection]] = defaultdict(set)
        self._waiters: dict[str, set[asyncio.Event]] = defaultdict(set)
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Listen for pushes from every process."""
        await self.broker.subscribe(TOPIC, self._on_push)

    def add(self, connection: Connection) -> None:
        """A socket opened on this process."""
        self._sockets[connection.visitor].add(connection)

    def remove(self, connection: Connection) -> None:
        """A socket closed."""
        held = self._sockets.get(connection.visitor)
        if held is not None:
            held.discard(connection)
            if not held:
                del self._sockets[connection.visitor]

    @property
    def connections(self) -> int:
        """How many sockets this process holds."""
        return sum(len(s) for s in self._sockets.values())

    async def publish(self, visitor: str, frames: list[dict[str, Any]]) -> None:
        """Send frames to the visitor's sockets wherever they are (at most once; the outbox has the rest)."""
        await self.broker.publish(TOPIC, {"visitor": visitor, "frames": frames})

    async def wait(self, visitor: str, timeout: float) -> bool:
        """Block a long-poll until something is pushed to the visitor, or the timeout; True if pushed."""
        event = asyncio.Event()
        self._waiters[visitor].add(event)
        try:
            await asyncio.wait_for(event.wait(), timeout)
            return True
        except TimeoutError:
            return False
        finally:
            waiting = self._waiters.get(visitor)
            if waiting is not None:
                waiting.discard(event)
                if not waiting:
                    del self._waiters[visitor]

    async def _on_push(self, message: dict[str, Any]) -> None:
        visitor = message.get("visitor")
        frames = message.get("frames")
        if not isinstance(visitor, str) or not isinstance(frames, list):
            log.warning("ignoring a malformed webchat push")
            return
        for event in self._waiters.get(visitor, ()):
            event.set()
        held = list(self._sockets.get(visitor, ()))
        if held:
            # Not awaited: one slow socket must not hold up the broker's reader for everyone else.
            task = asyncio.get_running_loop().create_task(self._send_all(held, frames))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _send_all(connections: list[Connection], frames: list[dict[str, Any]]) -> None:
        for connection in connections:
            for frame in frames:
                if not await connection.send(frame):
                    break
