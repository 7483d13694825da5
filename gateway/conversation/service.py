"""Conversation data operations (synchronous; the async engine calls them in a threadpool)."""

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from common.channels import InboundMessage
from common.db import utcnow
from gateway.agent.models import Agent, Presence
from gateway.conversation.models import (
    Callback,
    ChannelIdentity,
    Contact,
    Conversation,
    Direction,
    Feedback,
    InboxEntry,
    Message,
    SenderType,
    Status,
)

OPEN_STATUSES = (Status.BOT, Status.PENDING_HUMAN, Status.HUMAN, Status.CALLBACK_REQUESTED, Status.VOICE)


def get_or_create_contact(*, db_session: Session, channel: str, source_id: str) -> Contact:
    """The contact behind a channel identity, created on first contact."""
    identity = db_session.scalar(
        select(ChannelIdentity).where(ChannelIdentity.channel == channel, ChannelIdentity.source_id == source_id)
    )
    if identity is not None:
        return identity.contact
    contact = Contact()
    db_session.add(contact)
    db_session.flush()
    db_session.add(ChannelIdentity(contact_id=contact.id, channel=channel, source_id=source_id))
    db_session.flush()
    return contact


def get_by_public_id(*, db_session: Session, public_id: str) -> Conversation | None:
    """A conversation by the id channels and Rasa see."""
    return db_session.scalar(select(Conversation).where(Conversation.public_id == public_id))


def get_open(*, db_session: Session, contact_id: int, channel: str) -> Conversation | None:
    """The contact's unresolved conversation on this channel, if any."""
    return db_session.scalar(
        select(Conversation)
        .where(
            Conversation.contact_id == contact_id,
            Conversation.channel == channel,
            Conversation.status.in_([s.value for s in OPEN_STATUSES]),
        )
        .order_by(Conversation.id.desc())
        .limit(1)
    )


def get_or_open(*, db_session: Session, contact_id: int, channel: str) -> Conversation:
    """The contact's unresolved conversation on this channel, or a new one."""
    conversation = get_open(db_session=db_session, contact_id=contact_id, channel=channel)
    if conversation is None:
        conversation = Conversation(contact_id=contact_id, channel=channel)
        db_session.add(conversation)
        db_session.flush()
    return conversation


def add_to_inbox(*, db_session: Session, messages: Sequence[InboundMessage], received_at: datetime) -> None:
    """Write inbound messages to the inbox in one statement; a key already there is left as it is."""
    rows = [
        {
            "channel": m.channel,
            "source_id": m.message_id,
            "payload": m.model_dump(mode="json"),
            "received_at": received_at,
        }
        for m in messages
    ]
    dialect = db_session.get_bind().dialect.name
    insert: Any = postgresql.insert if dialect == "postgresql" else sqlite.insert
    db_session.execute(insert(InboxEntry).on_conflict_do_nothing(index_elements=["channel", "source_id"]), rows)


def remove_from_inbox(*, db_session: Session, channel: str, source_id: str) -> None:
    """Drop a message's inbox row (in the transaction that stores the message itself)."""
    db_session.execute(delete(InboxEntry).where(InboxEntry.channel == channel, InboxEntry.source_id == source_id))


def get_inbox(*, db_session: Session, before: datetime) -> list[dict[str, Any]]:
    """Inbox payloads received before a moment, oldest first: messages a crash left unstored."""
    return list(
        db_session.scalars(select(InboxEntry.payload).where(InboxEntry.received_at < before).order_by(InboxEntry.id))
    )


def get_inbound(*, db_session: Session, channel: str, source_id: str) -> Message | None:
    """A stored inbound message by its channel id (the idempotency key)."""
    return db_session.scalar(select(Message).where(Message.channel == channel, Message.source_id == source_id))


def get_replies(*, db_session: Session, inbound_id: int) -> list[Message]:
    """The bot's replies to one inbound message, in order."""
    return list(db_session.scalars(select(Message).where(Message.reply_to_id == inbound_id).order_by(Message.id)))


def get_messages(
    *, db_session: Session, conversation_id: int, after_id: int = 0, include_private: bool = False
) -> list[Message]:
    """A conversation's transcript, optionally only what came after a message id."""
    stmt = select(Message).where(Message.conversation_id == conversation_id, Message.id > after_id)
    if not include_private:
        stmt = stmt.where(Message.private.is_(False))
    return list(db_session.scalars(stmt.order_by(Message.id)))


def get_sent(*, db_session: Session, channel: str, source_id: str, after_id: int) -> list[Message]:
    """Non-private outbound messages to the contact behind a channel identity, after a message id."""
    return list(
        db_session.scalars(
            select(Message)
            .join(Conversation, Conversation.id == Message.conversation_id)
            .join(ChannelIdentity, ChannelIdentity.contact_id == Conversation.contact_id)
            .where(
                ChannelIdentity.channel == channel,
                ChannelIdentity.source_id == source_id,
                Conversation.channel == channel,
                Message.direction == Direction.OUT.value,
                Message.private.is_(False),
                Message.id > after_id,
            )
            .order_by(Message.id)
        )
    )


def get_source_id(*, db_session: Session, conversation: Conversation) -> str | None:
    """How the conversation's channel names its customer (where a push goes)."""
    return db_session.scalar(
        select(ChannelIdentity.source_id).where(
            ChannelIdentity.contact_id == conversation.contact_id, ChannelIdentity.channel == conversation.channel
        )
    )


def get_callbacks(*, db_session: Session) -> list[tuple[Callback, str]]:
    """Callbacks not yet done, soonest slot first, with their conversation's public id."""
    return [
        (row, public_id)
        for row, public_id in db_session.execute(
            select(Callback, Conversation.public_id)
            .join(Conversation, Conversation.id == Callback.conversation_id)
            .where(Callback.status != "done")
            .order_by(Callback.slot_start)
        )
    ]


def get_callback(*, db_session: Session, callback_id: int) -> Callback | None:
    """One callback."""
    return db_session.get(Callback, callback_id)


def get_timeline(*, db_session: Session, contact_id: int) -> list[tuple[Conversation, Message]]:
    """Everything a contact said and was told, across channels and conversations, oldest first."""
    rows = db_session.execute(
        select(Conversation, Message)
        .join(Message, Message.conversation_id == Conversation.id)
        .where(Conversation.contact_id == contact_id)
        .order_by(Message.created_at, Message.id)
    )
    return [(conversation, message) for conversation, message in rows]


def get_last_answer(*, db_session: Session, conversation_id: int) -> Message | None:
    """The bot's most recent knowledge answer in a conversation (a notice built from an entry counts)."""
    return db_session.scalar(
        select(Message)
        .where(
            Message.conversation_id == conversation_id,
            or_(
                and_(Message.sender_type == SenderType.BOT.value, Message.kind == "answer"),
                and_(Message.kind == "notice", Message.kb_entry_id.is_not(None)),
            ),
        )
        .order_by(Message.id.desc())
        .limit(1)
    )


def get_last_kb_reply(*, db_session: Session, conversation_id: int, before_id: int) -> Message | None:
    """The bot's reply to the previous customer message, if it was an answer or did-you-mean choices."""
    previous_in = db_session.scalar(
        select(Message.id)
        .where(
            Message.conversation_id == conversation_id,
            Message.direction == Direction.IN.value,
            Message.id < before_id,
        )
        .order_by(Message.id.desc())
        .limit(1)
    )
    if previous_in is None:
        return None
    return db_session.scalar(
        select(Message)
        .where(
            Message.conversation_id == conversation_id,
            Message.reply_to_id == previous_in,
            Message.kind.in_(("answer", "suggest")),
        )
        .order_by(Message.id.desc())
        .limit(1)
    )


def add_message(
    *,
    db_session: Session,
    conversation: Conversation,
    direction: Direction,
    sender_type: SenderType,
    text: str,
    kind: str = "text",
    source_id: str | None = None,
    reply_to_id: int | None = None,
    **extra: object,
) -> Message:
    """Store one message of a conversation."""
    message = Message(
        conversation_id=conversation.id,
        channel=conversation.channel,
        source_id=source_id,
        direction=direction.value,
        sender_type=sender_type.value,
        text=text,
        kind=kind,
        reply_to_id=reply_to_id,
        **extra,
    )
    db_session.add(message)
    db_session.flush()
    return message


def add_system_message(*, db_session: Session, conversation: Conversation, kind: str, text: str) -> Message:
    """A notice from the system to the customer (an agent joined, the effort question)."""
    return add_message(
        db_session=db_session,
        conversation=conversation,
        direction=Direction.OUT,
        sender_type=SenderType.SYSTEM,
        text=text,
        kind=kind,
    )


def count_agents_online(*, db_session: Session) -> int:
    """Agents whose presence is online (away agents take no new conversations)."""
    return (
        db_session.scalar(select(func.count()).select_from(Agent).where(Agent.presence == Presence.ONLINE.value)) or 0
    )


def get_waiting(*, db_session: Session) -> list[Conversation]:
    """The human queue: high priority first, then the longest waiting."""
    return list(
        db_session.scalars(
            select(Conversation)
            .where(Conversation.status == Status.PENDING_HUMAN.value)
            .order_by((Conversation.priority == "high").desc(), Conversation.waiting_since, Conversation.id)
        )
    )


def get_assigned(*, db_session: Session, agent_id: int) -> list[Conversation]:
    """Conversations an agent holds now."""
    return list(
        db_session.scalars(
            select(Conversation)
            .where(Conversation.assignee_id == agent_id, Conversation.status == Status.HUMAN.value)
            .order_by(Conversation.updated_at)
        )
    )


def queue_position(*, db_session: Session, conversation: Conversation) -> int:
    """How many waiting conversations are ahead of this one."""
    ids = [c.id for c in get_waiting(db_session=db_session)]
    return ids.index(conversation.id) if conversation.id in ids else len(ids)


def record_feedback(
    *, db_session: Session, conversation: Conversation, kind: str, score: int | None = None
) -> Feedback:
    """Helpful/unhelpful on the latest bot answer, or a CES score on the conversation."""
    answer = get_last_answer(db_session=db_session, conversation_id=conversation.id) if kind != "ces" else None
    feedback = Feedback(
        conversation_id=conversation.id,
        message_id=answer.id if answer else None,
        kb_entry_id=answer.kb_entry_id if answer else None,
        kind=kind,
        score=score,
    )
    db_session.add(feedback)
    db_session.flush()
    return feedback


def create_callback(
    *, db_session: Session, conversation: Conversation, phone: str, slot_start: datetime, slot_end: datetime
) -> Callback:
    """A requested call back to the customer."""
    callback = Callback(
        conversation_id=conversation.id,
        contact_id=conversation.contact_id,
        phone=phone,
        slot_start=slot_start,
        slot_end=slot_end,
    )
    conversation.contact.phone = conversation.contact.phone or phone
    db_session.add(callback)
    db_session.flush()
    return callback


def mark_processed(*, db_session: Session, message: Message) -> None:
    """The inbound message has its replies; a retried delivery now replays them."""
    message.processed_at = utcnow()
    db_session.flush()
