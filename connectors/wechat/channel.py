"""`/api/v1/channels/wechat`: the server URL configured in the WeChat Official Account admin.

GET answers WeChat's server check (sha1 over token/timestamp/nonce, echo `echostr`). POST receives pushes in
plaintext, compatible or safe mode: `signature` and the timestamp (at most 5 minutes old) are checked on
every push; with `encrypt_type=aes` the `msg_signature` is checked, the envelope opened (current key, then
the previous one after a rotation) and the passive reply encrypted in turn.

The 5-second rule: WeChat gives up after 5 s and retries the same push three times. Each push becomes one
engine turn keyed by MsgId (events: FromUserName:CreateTime:Event), so the engine's idempotency holds across
processes; within a process, retries of a push still being answered join the running turn instead of
queueing behind it. Nothing is acknowledged before the engine has stored it (a `success` for a message
lost in a crash would never be retried). While the process is not busy (at most `passive_max_in_flight` turns
running) and the turn finishes within `reply_budget_s`, the answer is a passive reply (every retry gets the
same one); otherwise WeChat gets `success` as soon as the message is stored — and so does every later retry —
and the replies are pushed through the customer-service API when ready. If even storing cannot finish
within WeChat's 5 s, the push gets a 503 and WeChat's retry finds it stored (or stores it).

Rendering: a passive reply is one text message, so the turn's replies are joined into one text and the
options of the last reply that has any become numbered choices (回复 1/2/3). Pushes use one customer-service
message per reply, with options as a `msgmenu`. Either way the customer's "1", or a tap on a menu item
(which comes back with `bizmsgmenuid`), is mapped to the option's payload from a per-openid choice map kept
in process and, when `KEFU_REDIS_URL` is set, in Redis (shared by gateway processes). Outside the 48-hour
customer-service window (errcode 45015) a reply goes out as the configured template message, linking to
`reply.url` when it has one (notices carry their confirm page there).
"""

import asyncio
import functools
import json
import logging
import re
import time
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import PlainTextResponse, Response

from common.channels import InboundHandler, InboundMessage, InboundResult, Reply, ReplyOption
from connectors.wechat import crypto, messages
from connectors.wechat.client import OUTSIDE_WINDOW, WechatApiError, WechatClient
from connectors.wechat.settings import WechatSettings

log = logging.getLogger(__name__)

CHANNEL = "wechat"
ACK = "success"
# A finished turn is remembered this long: WeChat's retries come within ~15 s of the first push.
TURN_MEMORY_S = 60.0
_CHOICE = re.compile(r"^\s*([1-9])\s*$")
_OPENID = re.compile(r"^[A-Za-z0-9_\-]{1,128}$")
SUBSCRIBE_TEXT = "你好"
# WeChat gives up on a push after 5 s; past this, a push not yet stored is refused so that WeChat retries it.
STORE_PATIENCE_S = 4.5
# How often a push waiting for its passive reply looks whether the process has become busy.
BUSY_CHECK_S = 0.02


class NotStored(Exception):
    """The push could not be stored in time; it must not be acknowledged."""


class ChoiceStore:
    """openid -> {"1": payload, …}: the numbered choices (or menu items) the customer was last shown."""

    def __init__(self, *, ttl_s: int, redis_url: str | None = None):
        self._ttl = ttl_s
        self._redis_url = redis_url
        self._redis: Any = None
        self._local: dict[str, tuple[dict[str, str], float]] = {}

    def _client(self) -> Any:
        if self._redis is None and self._redis_url:
            import redis.asyncio

            self._redis = redis.asyncio.from_url(self._redis_url, decode_responses=True)
        return self._redis

    async def put(self, openid: str, options: list[ReplyOption]) -> None:
        """Remember the options shown to `openid`, numbered from 1."""
        mapping = {str(i): option.payload for i, option in enumerate(options[:9], start=1)}
        self._local[openid] = (mapping, time.monotonic() + self._ttl)
        client = self._client()
        if client is not None:
            try:
                await client.set(f"kefu:wechat:choices:{openid}", json.dumps(mapping), ex=self._ttl)
            except Exception:
                log.warning("could not store WeChat choices in Redis; this process still has them", exc_info=True)

    async def get(self, openid: str, number: str) -> str | None:
        """The payload of choice `number` last shown to `openid`, if any."""
        client = self._client()
        if client is not None:
            try:
                raw = await client.get(f"kefu:wechat:choices:{openid}")
                if raw:
                    return json.loads(raw).get(number)
            except Exception:
                log.warning("could not read WeChat choices from Redis; using this process's", exc_info=True)
        local = self._local.get(openid)
        if local is None or local[1] < time.monotonic():
            self._local.pop(openid, None)
            return None
        return local[0].get(number)

    async def aclose(self) -> None:
        """Close the Redis connection pool."""
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None


def numbered(reply: Reply) -> str:
    """A reply as plain text, its options as 回复 1/2/3 lines."""
    lines = [f"回复 {i}：{option.title}" for i, option in enumerate(reply.options[:9], start=1)]
    return "\n".join([reply.text, "", *lines]) if lines else reply.text


def passive_text(replies: list[Reply]) -> tuple[str, list[ReplyOption]]:
    """The turn's replies as one passive text, and the options numbered in it."""
    shown = [r for r in replies if r.text.strip() or r.options]
    with_options = [i for i, r in enumerate(shown) if r.options]
    last = with_options[-1] if with_options else -1
    parts = [numbered(r) if i == last else r.text for i, r in enumerate(shown)]
    return "\n\n".join(p for p in parts if p.strip()), (shown[last].options if last >= 0 else [])


class WechatSender:
    """Pushes persisted replies through the customer-service API; templates outside the 48-hour window."""

    def __init__(self, *, client: WechatClient, choices: ChoiceStore, template_id: str = ""):
        self._client = client
        self._choices = choices
        self._template_id = template_id

    async def send(self, source_id: str, replies: list[Reply]) -> None:
        """One customer-service message per reply (options as a msgmenu)."""
        for reply in replies:
            if not reply.text.strip() and not reply.options:
                continue
            try:
                await self._client.send_custom(self._custom(source_id, reply))
            except WechatApiError as exc:
                if exc.errcode != OUTSIDE_WINDOW:
                    raise
                await self._template(source_id, reply)
                continue
            if reply.options:
                await self._choices.put(source_id, reply.options)

    def _custom(self, openid: str, reply: Reply) -> dict[str, Any]:
        if not reply.options:
            return {"touser": openid, "msgtype": "text", "text": {"content": reply.text}}
        return {
            "touser": openid,
            "msgtype": "msgmenu",
            "msgmenu": {
                "head_content": reply.text,
                "list": [{"id": str(i), "content": o.title} for i, o in enumerate(reply.options[:9], start=1)],
                "tail_content": "",
            },
        }

    async def _template(self, openid: str, reply: Reply) -> None:
        if not self._template_id:
            log.warning("%s is outside the 48-hour window and no template is configured; message kept", openid)
            return
        body: dict[str, Any] = {
            "touser": openid,
            "template_id": self._template_id,
            "data": {
                "first": {"value": reply.text[:200]},
                "keyword1": {"value": reply.kind},
                "remark": {"value": "点击查看详情并确认" if reply.url else "请在公众号内回复消息继续咨询"},
            },
        }
        if reply.url:
            body["url"] = reply.url
        await self._client.send_template(body)


@dataclass
class Turn:
    """One push being answered: retries join it instead of starting a second turn."""

    openid: str
    task: "asyncio.Task[InboundResult]"
    stored: asyncio.Event
    deferred: bool = False


class WechatChannel:
    """The router, the sender and the in-flight turns of one official account."""

    def __init__(
        self,
        settings: WechatSettings,
        handle: InboundHandler,
        *,
        redis_url: str | None = None,
        client: WechatClient | None = None,
    ):
        assert settings.enabled and settings.token is not None and settings.secret is not None
        self.settings = settings
        self._handle = handle
        self._token = settings.token.get_secret_value()
        previous = (settings.previous_aes_key.get_secret_value(),) if settings.previous_aes_key else ()
        self._envelope = (
            crypto.Envelope(settings.aes_key.get_secret_value(), settings.appid, previous_keys=previous)
            if settings.aes_key
            else None
        )
        self.client = client or WechatClient(
            appid=settings.appid,
            secret=settings.secret.get_secret_value(),
            api_base=settings.api_base,
            timeout_s=settings.api_timeout_s,
            redis_url=redis_url,
        )
        self.choices = ChoiceStore(ttl_s=settings.choices_ttl_s, redis_url=redis_url)
        self.sender = WechatSender(client=self.client, choices=self.choices, template_id=settings.template_id)
        self._turns: dict[str, Turn] = {}
        self._pushes: set[asyncio.Task[None]] = set()
        self.router = self._router()

    async def aclose(self) -> None:
        """Let running turns and pending pushes finish, then release connections."""
        running = [turn.task for turn in self._turns.values() if not turn.task.done()]
        if running:
            await asyncio.wait(running, timeout=self.settings.api_timeout_s * 2)
        await asyncio.sleep(0)
        if self._pushes:
            await asyncio.wait(self._pushes, timeout=self.settings.api_timeout_s * 2)
        await self.client.aclose()
        await self.choices.aclose()

    # -- HTTP -----------------------------------------------------------------------------------

    def _router(self) -> APIRouter:
        router = APIRouter(prefix="/api/v1/channels/wechat", tags=["channel: wechat"])

        @router.get("", response_class=PlainTextResponse)
        async def verify(
            signature: str = Query(max_length=64),
            timestamp: str = Query(max_length=16),
            nonce: str = Query(max_length=64),
            echostr: str = Query(max_length=256),
        ) -> PlainTextResponse:
            """WeChat's server-URL check: echo `echostr` when the signature is ours."""
            try:
                crypto.check_signature(signature, self._token, timestamp, nonce)
            except crypto.WechatCryptoError:
                log.warning("WeChat server check with a bad signature refused")
                return PlainTextResponse("bad signature", status_code=403)
            return PlainTextResponse(echostr)

        @router.post("")
        async def receive(request: Request) -> Response:
            """One push from WeChat: a passive reply, or `success` and a customer-service push later."""
            return await self.receive(request)

        return router

    async def receive(self, request: Request) -> Response:
        """Check, decode and answer one push (see the module docstring)."""
        started = time.monotonic()
        q = request.query_params
        timestamp, nonce = q.get("timestamp", ""), q.get("nonce", "")
        try:
            crypto.check_signature(q.get("signature", ""), self._token, timestamp, nonce)
        except crypto.WechatCryptoError:
            log.warning("WeChat push with a bad signature refused")
            return PlainTextResponse("bad signature", status_code=403)
        if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > self.settings.max_timestamp_skew_s:
            log.warning("WeChat push with a stale or invalid timestamp %r refused", timestamp[:16])
            return PlainTextResponse("stale timestamp", status_code=403)
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.settings.max_body_bytes:
            log.warning("WeChat push of %s bytes refused", declared)
            return PlainTextResponse("too large", status_code=413)
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > self.settings.max_body_bytes:
                log.warning("WeChat push over %d bytes refused", self.settings.max_body_bytes)
                return PlainTextResponse("too large", status_code=413)
        encrypted = q.get("encrypt_type", "raw") == "aes"
        try:
            fields = messages.parse(bytes(body), max_bytes=self.settings.max_body_bytes)
            if encrypted:
                fields = self._open(fields, q.get("msg_signature", ""), timestamp, nonce)
        except messages.BadXml as exc:
            log.warning("WeChat push refused: %s", exc)
            return PlainTextResponse("bad xml", status_code=400)
        except crypto.WechatCryptoError as exc:
            log.warning("WeChat encrypted push refused: %s", exc)
            return PlainTextResponse("bad envelope", status_code=403)
        inbound = messages.Inbound(fields)
        if not _OPENID.match(inbound.openid):
            log.warning("WeChat push without a valid FromUserName ignored")
            return PlainTextResponse("bad sender", status_code=400)
        try:
            content = await self._reply_text(inbound, started)
        except NotStored:
            log.warning(
                "WeChat push %s not stored within %.1f s; refused so that WeChat retries",
                inbound.dedup_id[:64],
                STORE_PATIENCE_S,
            )
            return PlainTextResponse("busy", status_code=503)
        if not content:
            return PlainTextResponse(ACK)
        xml = messages.text_reply(to=inbound.openid, account=inbound.get("ToUserName"), content=content)
        if encrypted:
            assert self._envelope is not None
            reply_ts, reply_nonce = str(int(time.time())), nonce
            encrypt = self._envelope.encrypt(xml)
            xml = messages.encrypted_reply(
                encrypt=encrypt,
                msg_signature=crypto.signature(self._token, reply_ts, reply_nonce, encrypt),
                timestamp=reply_ts,
                nonce=reply_nonce,
            )
        return Response(xml, media_type="application/xml")

    def _open(self, outer: dict[str, str], msg_signature: str, timestamp: str, nonce: str) -> dict[str, str]:
        if self._envelope is None:
            raise crypto.WechatCryptoError("encrypted push but KEFU_WECHAT_AES_KEY is not set")
        encrypt = outer.get("Encrypt", "")
        crypto.check_signature(msg_signature, self._token, timestamp, nonce, encrypt)
        # AES over a capped body takes microseconds: not worth a thread hop.
        inner = self._envelope.decrypt(encrypt)
        return messages.parse(inner.encode(), max_bytes=self.settings.max_body_bytes)

    # -- turns ----------------------------------------------------------------------------------

    async def _inbound_text(self, inbound: messages.Inbound) -> tuple[str, dict[str, Any]] | None:
        kind = inbound.msg_type
        meta: dict[str, Any] = {"wechat": {"msg_type": kind}}
        if kind == "text":
            text = inbound.get("Content")
            menu_id = inbound.get("bizmsgmenuid")
            number = menu_id if menu_id else (m.group(1) if (m := _CHOICE.match(text)) else None)
            if number:
                payload = await self.choices.get(inbound.openid, number)
                if payload:
                    meta["wechat"]["choice"] = number
                    return payload, meta
            return text, meta
        if kind == "voice":
            text = inbound.get("Recognition")
            if not text:
                log.info("voice message from %s without recognition text acknowledged", inbound.openid)
                return None
            return text, meta
        if kind == "event":
            event = inbound.get("Event").lower()
            meta["wechat"]["event"] = event
            if event == "subscribe":
                return SUBSCRIBE_TEXT, meta
            if event == "click" and inbound.get("EventKey"):
                # A menu key is either a payload (/request_human) or the question itself.
                return inbound.get("EventKey"), meta
            log.info("WeChat event %r from %s acknowledged", event[:32], inbound.openid)
            return None
        log.info("WeChat %r message from %s acknowledged, not answered", kind[:32], inbound.openid)
        return None

    async def _reply_text(self, inbound: messages.Inbound, started: float) -> str | None:
        """The passive reply's text; None acknowledges with `success`. Raises NotStored past WeChat's patience."""
        key = inbound.dedup_id[:128]
        turn = self._turns.get(key)
        if turn is None:
            decoded = await self._inbound_text(inbound)
            if decoded is None or not decoded[0].strip():
                return None
            text, meta = decoded
            message = InboundMessage(channel=CHANNEL, sender=inbound.openid, text=text, message_id=key, metadata=meta)
            stored = asyncio.Event()
            turn = Turn(
                openid=inbound.openid, task=asyncio.create_task(self._handle(message, stored=stored.set)), stored=stored
            )
            self._turns[key] = turn
            turn.task.add_done_callback(functools.partial(self._done, key, turn))
        elif turn.deferred:
            return None
        # Wait for the answer while the budget lasts and the process is not busy — checked again and again:
        # the first push of a burst stops waiting as soon as the rest of the burst arrives.
        deadline = started + self.settings.reply_budget_s
        while not turn.task.done():
            if self._busy() or time.monotonic() >= deadline:
                await self._until_stored(turn, started)
                if not turn.task.done():
                    turn.deferred = True
                    return None
                break
            await asyncio.wait([turn.task], timeout=min(BUSY_CHECK_S, max(0.0, deadline - time.monotonic())))
        if turn.task.cancelled() or turn.task.exception() is not None:
            return None  # logged by _done; the message is stored, a human can pick it up
        result = turn.task.result()
        if turn.deferred:
            return None
        content, options = passive_text(result.replies)
        if options:
            await self.choices.put(inbound.openid, options)
        return content or None

    def _busy(self) -> bool:
        return sum(1 for t in self._turns.values() if not t.task.done()) > self.settings.passive_max_in_flight

    async def _until_stored(self, turn: Turn, started: float) -> None:
        patience = STORE_PATIENCE_S - (time.monotonic() - started)
        try:
            await asyncio.wait_for(turn.stored.wait(), timeout=max(0.0, patience))
        except TimeoutError:
            raise NotStored from None

    def _done(self, key: str, turn: Turn, _task: "asyncio.Task[InboundResult]") -> None:
        asyncio.get_running_loop().call_later(TURN_MEMORY_S, self._forget, key, turn)
        if turn.task.cancelled():
            return
        error = turn.task.exception()
        if error is not None:
            log.error("WeChat turn %s failed", key, exc_info=error)
            return
        if turn.deferred:
            push = asyncio.get_running_loop().create_task(self._push(turn.openid, turn.task.result().replies))
            self._pushes.add(push)
            push.add_done_callback(self._pushes.discard)

    async def _push(self, openid: str, replies: list[Reply]) -> None:
        try:
            await self.sender.send(openid, replies)
        except Exception:
            log.exception("late replies to %s could not be pushed; they stay in the outbox", openid)

    def _forget(self, key: str, turn: Turn) -> None:
        if self._turns.get(key) is turn:
            del self._turns[key]


def install(
    app: FastAPI, handle: InboundHandler, *, settings: WechatSettings, redis_url: str | None = None
) -> WechatChannel | None:
    """Serve the channel and register its sender on `app.state.delivery` when a token is configured."""
    if not settings.enabled:
        return None
    channel = WechatChannel(settings, handle, redis_url=redis_url)
    app.include_router(channel.router)
    app.state.delivery.register(CHANNEL, channel.sender)
    return channel
