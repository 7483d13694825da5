"""Wiring the web chat widget into the gateway: its router, push sender, broker, and customer operations."""

from pathlib import Path

from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from common.broker import Broker, make_broker
from common.channels import HandoffInfo, InboundHandler, ReplyOption
from common.settings import CommonSettings, generated_secret
from connectors.webchat import channel
from connectors.webchat.hub import Hub
from connectors.webchat.protocol import ChatItem, sender_of
from connectors.webchat.settings import WebchatSettings
from gateway.conversation import service
from gateway.conversation.engine import REPLY_KINDS
from gateway.conversation.models import ChannelIdentity, Conversation, Direction, Feedback, Message, SenderType, Status

SECRET_ENV = "KEFU_WEBCHAT_VISITOR_SECRET"


class Webchat:
    """The widget's per-process parts, started and stopped by the app's lifespan."""

    def __init__(self, broker: Broker, hub: Hub):
        self.broker = broker
        self.hub = hub

    async def start(self) -> None:
        """Connect the broker and listen for pushes."""
        await self.broker.start()
        await self.hub.start()

    async def stop(self) -> None:
        """Disconnect the broker."""
        await self.broker.close()


def visitor_secret(var_dir: Path) -> SecretStr:
    """The operator's secret, or one generated once under var/secrets (tokens survive restarts)."""
    return SecretStr(generated_secret(var_dir, env=SECRET_ENV, name="webchat_visitor_secret"))


def install(app: FastAPI, common: CommonSettings, handle: InboundHandler) -> Webchat:
    """Add the widget's routes and register its push sender; the lifespan calls start/stop."""
    settings = WebchatSettings(visitor_secret=visitor_secret(common.var_dir))
    broker = make_broker(common.redis_url)
    hub = Hub(broker)

    async def history(visitor: str, limit: int) -> list[ChatItem]:
        return await run_in_threadpool(get_history, app.state.session_factory, visitor, limit)

    async def rate(visitor: str, score: int) -> None:
        await run_in_threadpool(rate_effort, app.state.session_factory, visitor, score)

    app.include_router(
        channel.make_router(
            handle,
            lambda chan, sender, after: app.state.engine_.outbound(chan, sender, after),
            hub=hub,
            settings=settings,
            history=history,
            rate=rate,
        )
    )
    app.state.delivery.register(channel.CHANNEL, channel.WebchatSender(hub))
    return Webchat(broker, hub)


def get_history(factory: sessionmaker[Session], visitor: str, limit: int) -> list[ChatItem]:
    """The visitor's last `limit` web chat messages (what they wrote and were told), oldest first."""
    with factory() as db:
        rows = db.scalars(
            select(Message)
            .join(Conversation, Conversation.id == Message.conversation_id)
            .join(ChannelIdentity, ChannelIdentity.contact_id == Conversation.contact_id)
            .where(
                ChannelIdentity.channel == channel.CHANNEL,
                ChannelIdentity.source_id == visitor,
                Conversation.channel == channel.CHANNEL,
                Message.private.is_(False),
            )
            .order_by(Message.id.desc())
            .limit(limit)
        ).all()
        return [_item(m) for m in reversed(rows)]


def rate_effort(factory: sessionmaker[Session], visitor: str, score: int) -> None:
    """Record the CES of the visitor's latest conversation, once, and only after it was resolved."""
    with factory() as db:
        conversation = db.scalar(
            select(Conversation)
            .join(ChannelIdentity, ChannelIdentity.contact_id == Conversation.contact_id)
            .where(
                ChannelIdentity.channel == channel.CHANNEL,
                ChannelIdentity.source_id == visitor,
                Conversation.channel == channel.CHANNEL,
            )
            .order_by(Conversation.id.desc())
            .limit(1)
        )
        if conversation is None or conversation.status != Status.RESOLVED.value:
            raise LookupError("没有可以评价的已解决会话")
        rated = db.scalar(
            select(Feedback.id).where(Feedback.conversation_id == conversation.id, Feedback.kind == "ces")
        )
        if rated is not None:
            raise LookupError("这次会话已经评价过了")
        service.record_feedback(db_session=db, conversation=conversation, kind="ces", score=score)
        db.commit()


def _item(m: Message) -> ChatItem:
    if m.direction == Direction.IN.value:
        return ChatItem(text=m.text, kind="text", message_id=m.id, sender="customer")
    kind = m.kind if m.kind in REPLY_KINDS else "agent" if m.sender_type == SenderType.AGENT.value else "info"
    payload = m.payload or {}
    return ChatItem(
        text=m.text,
        kind=kind,  # type: ignore[arg-type]
        kb_id=m.kb_entry_id,
        options=[ReplyOption(**o) for o in payload.get("options", [])],
        handoff=HandoffInfo(**payload["handoff"]) if payload.get("handoff") else None,
        message_id=m.id,
        url=payload.get("url"),
        sender="agent" if m.sender_type == SenderType.AGENT.value else sender_of(kind),
    )
