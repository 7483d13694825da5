"""The web chat channel: the widget's WebSocket, its REST/long-poll fallback, and the widget's files.

Like every connector it knows nothing of the core: it is given the inbound handler, the outbound store,
and two small customer operations (history, effort score) as functions.
"""

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Query, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field, ValidationError

from common.channels import InboundHandler, InboundMessage, OutboundFetcher, Reply
from connectors.webchat import protocol
from connectors.webchat.hub import Connection, Hub
from connectors.webchat.protocol import ChatItem, Hello, UserMessage
from connectors.webchat.settings import WebchatSettings
from connectors.webchat.tokens import InvalidToken, VisitorTokens

log = logging.getLogger(__name__)

CHANNEL = "webchat"
STATIC = Path(__file__).parent / "static"
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
CLOSE_BAD_TOKEN = 4401
CLOSE_BAD_HELLO = 4400

# (visitor, limit) -> the visitor's conversation on this channel, customer messages included, oldest first.
HistoryFetcher = Callable[[str, int], Awaitable[list[ChatItem]]]
# (visitor, score 1..7) -> record the effort score of the visitor's last resolved conversation;
# raises LookupError when there is nothing to rate.
EffortRater = Callable[[str, int], Awaitable[None]]

# Message handling outlives a dropped socket (the customer's message is answered and stored either way).
_background: set[asyncio.Task[None]] = set()


class WebchatSender:
    """`Delivery`'s sender for "webchat": publish to the broker; the process holding the socket sends it."""

    def __init__(self, hub: Hub):
        self._hub = hub

    async def send(self, source_id: str, replies: list[Reply]) -> None:
        """Push persisted replies to the visitor's open sockets and long-polls."""
        await self._hub.publish(source_id, [protocol.message_frame(protocol.chat_item(r)) for r in replies])


class SessionIn(BaseModel):
    token: str | None = Field(default=None, max_length=200)


class SessionOut(BaseModel):
    visitor: str
    token: str


class MessageIn(BaseModel):
    id: str = Field(pattern=protocol.CLIENT_ID_PATTERN, description="client-generated idempotency key")
    text: str = Field(max_length=20_000)


class MessageOut(BaseModel):
    ack: str
    conversation_id: str
    status: str
    replayed: bool
    messages: list[ChatItem]


class CesIn(BaseModel):
    score: int = Field(ge=1, le=7)


def make_router(
    handle: InboundHandler,
    fetch: OutboundFetcher,
    *,
    hub: Hub,
    settings: WebchatSettings,
    history: HistoryFetcher,
    rate: EffortRater,
) -> APIRouter:
    """The channel's routes, bound to the core's handlers and this process's hub."""
    tokens = VisitorTokens(settings.visitor_secret)
    api = APIRouter(prefix="/api/v1/channels/webchat", tags=["channel: webchat"])

    def check_text(text: str) -> str | None:
        """Why a customer text is refused, or None."""
        if not _CONTROL.sub("", text).strip():
            return "消息不能为空"
        if len(text) > settings.max_text_chars:
            return f"消息太长（最多 {settings.max_text_chars} 字）"
        return None

    def visitor_of(x_kefu_visitor: Annotated[str | None, Header()] = None) -> str:
        try:
            return tokens.verify(x_kefu_visitor)
        except InvalidToken as exc:
            raise HTTPException(status_code=401, detail=str(exc)) from exc

    Visitor = Annotated[str, Depends(visitor_of)]

    async def answer(visitor: str, frame: UserMessage) -> MessageOut:
        result = await handle(
            InboundMessage(channel=CHANNEL, sender=visitor, text=frame.text, message_id=f"{visitor}:{frame.id}")
        )
        return MessageOut(
            ack=frame.id,
            conversation_id=result.conversation_id,
            status=result.status,
            replayed=result.replayed,
            messages=[protocol.chat_item(r) for r in result.replies],
        )

    # -- WebSocket ------------------------------------------------------------------------------

    @api.websocket("/ws")
    async def socket(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            hello = await asyncio.wait_for(_hello(websocket, settings), settings.hello_timeout_s)
        except (TimeoutError, WebSocketDisconnect):
            await _close(websocket, CLOSE_BAD_HELLO)
            return
        if hello is None:
            await _close(websocket, CLOSE_BAD_HELLO)
            return
        if hello.token:
            try:
                visitor, token = tokens.verify(hello.token), hello.token
            except InvalidToken as exc:
                await websocket.send_json(protocol.error("bad_token", str(exc)))
                await _close(websocket, CLOSE_BAD_TOKEN)
                return
        else:
            visitor, token = tokens.issue()
        connection = Connection(websocket, visitor)
        # Registered before the replay, so a push arriving meanwhile is not missed (the client dedups by id).
        hub.add(connection)
        inbox: asyncio.Queue[UserMessage | None] = asyncio.Queue()
        worker = asyncio.create_task(_work(connection, inbox))
        _background.add(worker)
        worker.add_done_callback(_background.discard)
        try:
            await connection.send({"type": "welcome", "visitor": visitor, "token": token})
            if hello.history:
                items = await history(visitor, settings.history_limit)
                await connection.send({"type": "history", "items": [i.model_dump(mode="json") for i in items]})
            else:
                for reply in await fetch(CHANNEL, visitor, hello.last_seen_id):
                    await connection.send(protocol.message_frame(protocol.chat_item(reply)))
            await _receive(websocket, connection, inbox)
        except WebSocketDisconnect:
            pass
        finally:
            hub.remove(connection)
            connection.open = False
            # The worker finishes what was already received: those messages are answered and stored.
            inbox.put_nowait(None)

    async def _work(connection: Connection, inbox: "asyncio.Queue[UserMessage | None]") -> None:
        while (frame := await inbox.get()) is not None:
            refused = check_text(frame.text)
            if refused:
                await connection.send(protocol.error("rejected", refused, frame.id))
                continue
            await connection.send({"type": "typing", "on": True})
            try:
                out = await answer(connection.visitor, frame)
            except ValueError as exc:
                await connection.send(protocol.error("rejected", str(exc), frame.id))
                continue
            except Exception:
                log.exception("webchat message %s of %s failed", frame.id, connection.visitor)
                await connection.send(protocol.error("server_error", "服务暂时不可用，请稍后重试", frame.id))
                continue
            finally:
                await connection.send({"type": "typing", "on": False})
            await connection.send(
                {
                    "type": "ack",
                    "id": out.ack,
                    "conversation_id": out.conversation_id,
                    "status": out.status,
                    "replayed": out.replayed,
                }
            )
            for item in out.messages:
                await connection.send(protocol.message_frame(item))

    async def _receive(
        websocket: WebSocket, connection: Connection, inbox: "asyncio.Queue[UserMessage | None]"
    ) -> None:
        while True:
            frame, problem = await _next_frame(websocket, settings)
            if problem is not None:
                await connection.send(problem)
                continue
            if isinstance(frame, UserMessage):
                inbox.put_nowait(frame)
            elif isinstance(frame, protocol.ClientAck):
                connection.last_acked = max(connection.last_acked, frame.message_id)
            elif isinstance(frame, protocol.Ping):
                await connection.send({"type": "pong"})
            elif isinstance(frame, protocol.Ces):
                try:
                    await rate(connection.visitor, frame.score)
                    await connection.send({"type": "ces_recorded", "score": frame.score})
                except LookupError as exc:
                    await connection.send(protocol.error("not_allowed", str(exc)))
            elif isinstance(frame, Hello):
                await connection.send(protocol.error("bad_frame", "hello is only allowed as the first frame"))
            # typing: accepted; nothing consumes it yet.

    # -- REST / long-poll fallback --------------------------------------------------------------

    @api.post("/session", response_model=SessionOut)
    async def session(body: SessionIn) -> SessionOut:
        """Confirm a stored visitor token, or issue a new visitor (no token)."""
        if body.token:
            try:
                return SessionOut(visitor=tokens.verify(body.token), token=body.token)
            except InvalidToken as exc:
                raise HTTPException(status_code=401, detail=str(exc)) from exc
        visitor, token = tokens.issue()
        return SessionOut(visitor=visitor, token=token)

    @api.get("/history", response_model=list[ChatItem])
    async def get_history(visitor: Visitor) -> list[ChatItem]:
        """The visitor's conversation so far, their own messages included."""
        return await history(visitor, settings.history_limit)

    @api.post("/messages", response_model=MessageOut)
    async def post_message(body: MessageIn, visitor: Visitor) -> MessageOut:
        """A customer message without a socket; the replies come back in the response."""
        refused = check_text(body.text)
        if refused:
            raise HTTPException(status_code=422, detail=refused)
        try:
            return await answer(visitor, UserMessage(type="message", id=body.id, text=body.text))
        except ValueError as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from exc

    @api.get("/messages", response_model=list[ChatItem])
    async def poll(
        visitor: Visitor, after: int = Query(default=0, ge=0), wait: bool = Query(default=False)
    ) -> list[ChatItem]:
        """What the visitor was sent after message id `after`; with `wait`, held open until something comes."""
        replies = await fetch(CHANNEL, visitor, after)
        if not replies and wait and await hub.wait(visitor, settings.long_poll_s):
            replies = await fetch(CHANNEL, visitor, after)
        return [protocol.chat_item(r) for r in replies]

    @api.post("/ces", response_model=CesIn)
    async def post_ces(body: CesIn, visitor: Visitor) -> CesIn:
        """The customer's effort score (1 very hard … 7 very easy) for their last resolved conversation."""
        try:
            await rate(visitor, body.score)
        except LookupError as exc:
            raise HTTPException(status_code=409, detail=str(exc)) from exc
        return body

    # -- the widget's files ---------------------------------------------------------------------

    pages = APIRouter(tags=["channel: webchat"])

    @pages.get("/widget/{name}", include_in_schema=False)
    async def widget_file(name: str) -> FileResponse:
        if name not in ("kefu-widget.js", "kefu-widget.css"):
            raise HTTPException(status_code=404)
        return FileResponse(STATIC / name, headers={"Cache-Control": "no-cache"})

    @pages.get("/", include_in_schema=False)
    async def demo() -> FileResponse:
        return FileResponse(STATIC / "demo.html", headers={"Cache-Control": "no-cache"})

    router = APIRouter()
    router.include_router(api)
    router.include_router(pages)
    return router


async def _hello(websocket: WebSocket, settings: WebchatSettings) -> Hello | None:
    frame, problem = await _next_frame(websocket, settings)
    if problem is not None:
        await websocket.send_json(problem)
        return None
    if not isinstance(frame, Hello):
        await websocket.send_json(protocol.error("bad_frame", "the first frame must be hello"))
        return None
    return frame


async def _next_frame(websocket: WebSocket, settings: WebchatSettings) -> tuple[Any, dict[str, Any] | None]:
    """The next valid client frame, or an error frame describing why it was refused."""
    event = await websocket.receive()
    if event["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(event.get("code", 1000))
    raw = event.get("text")
    if raw is None:
        data = event.get("bytes") or b""
        if len(data) > settings.max_frame_bytes:
            return None, protocol.error("too_large", f"frame larger than {settings.max_frame_bytes} bytes")
        try:
            raw = data.decode("utf-8")
        except UnicodeDecodeError:
            return None, protocol.error("bad_json", "frames are UTF-8 JSON text")
    if len(raw.encode("utf-8")) > settings.max_frame_bytes:
        return None, protocol.error("too_large", f"frame larger than {settings.max_frame_bytes} bytes")
    try:
        data = json.loads(raw)
    except ValueError:
        return None, protocol.error("bad_json", "frame is not valid JSON")
    frame_id = data.get("id") if isinstance(data, dict) and isinstance(data.get("id"), str) else None
    try:
        return protocol.client_frame.validate_python(data), None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return None, protocol.error("bad_frame", f"{where}: {first['msg']}", frame_id[:64] if frame_id else None)


async def _close(websocket: WebSocket, code: int) -> None:
    with contextlib.suppress(Exception):
        await websocket.close(code=code)
