"""Conversation tables: one contact across channels, conversations with status and tier, every message."""

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from common.db import Base, UTCDateTime, utcnow


class Status(StrEnum):
    BOT = "bot"
    PENDING_HUMAN = "pending_human"
    HUMAN = "human"
    CALLBACK_REQUESTED = "callback_requested"
    VOICE = "voice"
    RESOLVED = "resolved"


class Tier(StrEnum):
    BOT = "bot"
    HUMAN_TEXT = "human_text"
    HUMAN_VOICE = "human_voice"


class HandoffReason(StrEnum):
    CUSTOMER_REQUEST = "customer_request"
    REPEATED_FAILURE = "repeated_failure"
    COMPLAINT = "complaint"
    NO_ANSWER = "no_answer"
    AFTER_HOURS = "after_hours"
    ELDERLY = "elderly"


class Priority(StrEnum):
    NORMAL = "normal"
    HIGH = "high"


class Direction(StrEnum):
    IN = "in"
    OUT = "out"


class SenderType(StrEnum):
    CUSTOMER = "customer"
    BOT = "bot"
    AGENT = "agent"
    SYSTEM = "system"


class Contact(Base):
    """One customer, whatever channels they use."""

    __tablename__ = "contact"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    display_name: Mapped[str] = mapped_column(String(100), default="")
    phone: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    # Customers aged 65+ go straight to a human (the operator's CRM sets this).
    elderly: Mapped[bool] = mapped_column(Boolean, default=False)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    identities: Mapped[list["ChannelIdentity"]] = relationship(back_populates="contact", lazy="selectin")


class ChannelIdentity(Base):
    """How a channel names a contact: a web visitor id, a WeChat openid, a phone number."""

    __tablename__ = "channel_identity"
    __table_args__ = (UniqueConstraint("channel", "source_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contact.id", ondelete="CASCADE"), index=True)
    channel: Mapped[str] = mapped_column(String(32))
    source_id: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    contact: Mapped[Contact] = relationship(back_populates="identities")


class Conversation(Base):
    __tablename__ = "conversation"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Public id: what Rasa, channels and URLs see (database ids stay internal).
    public_id: Mapped[str] = mapped_column(String(36), unique=True, default=lambda: str(uuid.uuid4()))
    contact_id: Mapped[int] = mapped_column(ForeignKey("contact.id", ondelete="CASCADE"), index=True)
    channel: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(32), default=Status.BOT.value, index=True)
    tier: Mapped[str] = mapped_column(String(16), default=Tier.BOT.value)
    priority: Mapped[str] = mapped_column(String(16), default=Priority.NORMAL.value)
    handoff_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("agent.id", ondelete="SET NULL"), nullable=True)
    # The bot's own memory of failures in a row (no answer, 没用), used when Rasa cannot be reached.
    failure_streak: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    waiting_since: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    first_human_reply_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    contact: Mapped[Contact] = relationship(lazy="joined")


class Message(Base):
    __tablename__ = "message"
    __table_args__ = (UniqueConstraint("channel", "source_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversation.id", ondelete="CASCADE"), index=True)
    channel: Mapped[str] = mapped_column(String(32))
    # The channel's id of an inbound message (idempotency key); outbound messages have none.
    source_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    direction: Mapped[str] = mapped_column(String(8))
    sender_type: Mapped[str] = mapped_column(String(16))
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agent.id", ondelete="SET NULL"), nullable=True)
    kind: Mapped[str] = mapped_column(String(32), default="text")
    text: Mapped[str] = mapped_column(Text, default="")
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    kb_entry_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    confidence: Mapped[float | None] = mapped_column(nullable=True)
    private: Mapped[bool] = mapped_column(Boolean, default=False)
    # Bot replies point at the inbound message they answer, so a retried delivery replays them.
    reply_to_id: Mapped[int | None] = mapped_column(
        ForeignKey("message.id", ondelete="SET NULL"), index=True, nullable=True
    )
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)


class InboxEntry(Base):
    """An inbound message as received, written before the channel acknowledges it.

    One cheap row per message (a burst is a single multi-row INSERT), so the acknowledgement does not wait
    for contacts, conversations and messages to be written. The row is deleted in the transaction that stores
    the message properly; rows left behind by a crash are stored and answered at the next start.
    """

    __tablename__ = "inbox"
    __table_args__ = (UniqueConstraint("channel", "source_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel: Mapped[str] = mapped_column(String(32))
    source_id: Mapped[str] = mapped_column(String(128))
    # The InboundMessage itself (sender, text, metadata).
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)


class Feedback(Base):
    """Helpful / unhelpful on a bot answer, or a customer-effort score (1–7) on a resolved conversation."""

    __tablename__ = "feedback"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversation.id", ondelete="CASCADE"), index=True)
    message_id: Mapped[int | None] = mapped_column(ForeignKey("message.id", ondelete="SET NULL"), nullable=True)
    kind: Mapped[str] = mapped_column(String(16))  # helpful | unhelpful | ces
    score: Mapped[int | None] = mapped_column(Integer, nullable=True)
    kb_entry_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Callback(Base):
    __tablename__ = "callback"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversation.id", ondelete="CASCADE"), index=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contact.id", ondelete="CASCADE"), index=True)
    phone: Mapped[str] = mapped_column(String(32))
    slot_start: Mapped[datetime] = mapped_column(UTCDateTime())
    slot_end: Mapped[datetime] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(16), default="requested")  # requested|called|no_answer|done
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
