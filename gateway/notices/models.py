"""Business events from the operator's systems, the notices they become, and the demo billing system's packages."""

from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Date, ForeignKey, Integer, Numeric, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from common.db import Base, UTCDateTime, utcnow


class NoticeStatus(StrEnum):
    SCHEDULED = "scheduled"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    CONFIRMED = "confirmed"
    DECLINED = "declined"
    EXPIRED = "expired"
    FAILED = "failed"


# A decision can still be taken on a notice in these states.
OPEN_STATES = (NoticeStatus.SENT.value, NoticeStatus.DELIVERED.value)


class BusinessEvent(Base):
    """One event as the operator sent it; `key` makes a re-sent event a no-op."""

    __tablename__ = "business_event"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(128), unique=True)
    type: Mapped[str] = mapped_column(String(64))
    customer: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    urgent: Mapped[bool] = mapped_column(default=False)
    # accepted | ignored (no rule, deduplicated, rate-limited) — with the reason in `detail`
    outcome: Mapped[str] = mapped_column(String(16), default="accepted")
    detail: Mapped[str] = mapped_column(String(200), default="")
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Notice(Base):
    """A message Kefu starts: stored before it is sent, sent at most once, answered at most once."""

    __tablename__ = "notice"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("business_event.id", ondelete="CASCADE"), index=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contact.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    # Per-customer deduplication: one live notice per (contact, dedup_key).
    dedup_key: Mapped[str] = mapped_column(String(160), index=True)
    channel: Mapped[str] = mapped_column(String(32))
    source_id: Mapped[str] = mapped_column(String(128))
    kb_entry_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    text: Mapped[str] = mapped_column(Text)
    asks_decision: Mapped[bool] = mapped_column(default=False)
    action: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default=NoticeStatus.SCHEDULED.value, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    last_error: Mapped[str] = mapped_column(String(300), default="")
    # Single-use secret of the confirm page link (SMS, template messages).
    token: Mapped[str] = mapped_column(String(64), unique=True)
    message_id: Mapped[int | None] = mapped_column(ForeignKey("message.id", ondelete="SET NULL"), nullable=True)
    conversation_id: Mapped[int | None] = mapped_column(
        ForeignKey("conversation.id", ondelete="SET NULL"), nullable=True, index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    action_result: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class DemoPackage(Base):
    """The demo billing system's subscriptions (the real operator's system is behind an HTTP client)."""

    __tablename__ = "demo_billing_package"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    phone: Mapped[str] = mapped_column(String(32), index=True)
    package: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="active")  # active | closed
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # The last day the package runs (monthly add-ons); none for day passes closed by events.
    expires_on: Mapped[date | None] = mapped_column(Date, nullable=True)


class DemoAccount(Base):
    """The demo billing system's balances and points, for the scheduled scans."""

    __tablename__ = "demo_billing_account"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    phone: Mapped[str] = mapped_column(String(32), unique=True)
    balance: Mapped[Decimal] = mapped_column(Numeric(12, 2), default=Decimal("0"))
    points: Mapped[int] = mapped_column(Integer, default=0)
    points_expire_on: Mapped[date | None] = mapped_column(Date, nullable=True)


class ScanRun(Base):
    """One scheduled scan on one day: the unique row is the claim, so gateway processes never run it twice."""

    __tablename__ = "notice_scan_run"
    __table_args__ = (UniqueConstraint("scan", "run_on"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scan: Mapped[str] = mapped_column(String(64))
    run_on: Mapped[date] = mapped_column(Date)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    events: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str] = mapped_column(String(300), default="")
