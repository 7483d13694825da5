"""Reading and writing events and notices."""

from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gateway.notices.models import OPEN_STATES, BusinessEvent, Notice, NoticeStatus


def get_event_by_key(*, db_session: Session, key: str) -> BusinessEvent | None:
    """The event sent earlier with this idempotency key."""
    return db_session.scalar(select(BusinessEvent).where(BusinessEvent.key == key))


def get(*, db_session: Session, notice_id: int) -> Notice | None:
    """One notice."""
    return db_session.get(Notice, notice_id)


def get_by_event(*, db_session: Session, event_id: int) -> Notice | None:
    """The notice an event became, if any."""
    return db_session.scalar(select(Notice).where(Notice.event_id == event_id))


def get_by_token(*, db_session: Session, token: str) -> Notice | None:
    """The notice behind a confirm-page link."""
    return db_session.scalar(select(Notice).where(Notice.token == token))


def get_open_decision(*, db_session: Session, contact_id: int) -> Notice | None:
    """The contact's latest notice still waiting for confirm / decline."""
    return db_session.scalar(
        select(Notice)
        .where(Notice.contact_id == contact_id, Notice.asks_decision.is_(True), Notice.status.in_(OPEN_STATES))
        .order_by(Notice.id.desc())
        .limit(1)
    )


def get_live_duplicate(*, db_session: Session, contact_id: int, dedup_key: str, since: datetime) -> Notice | None:
    """A notice with the same meaning for the same customer that still stands."""
    return db_session.scalar(
        select(Notice).where(
            Notice.contact_id == contact_id,
            Notice.dedup_key == dedup_key,
            Notice.created_at >= since,
            Notice.status.notin_((NoticeStatus.FAILED.value, NoticeStatus.EXPIRED.value)),
        )
    )


def count_recent(*, db_session: Session, contact_id: int, since: datetime) -> int:
    """How many notices the contact was given since a time (rate limit)."""
    return int(
        db_session.scalar(
            select(func.count(Notice.id)).where(Notice.contact_id == contact_id, Notice.created_at >= since)
        )
        or 0
    )


def get_due_ids(*, db_session: Session, now: datetime, limit: int) -> list[int]:
    """Scheduled notices whose time has come, oldest first."""
    return list(
        db_session.scalars(
            select(Notice.id)
            .where(Notice.status == NoticeStatus.SCHEDULED.value, Notice.next_attempt_at <= now)
            .order_by(Notice.next_attempt_at, Notice.id)
            .limit(limit)
        )
    )


def get_expired(*, db_session: Session, now: datetime) -> list[Notice]:
    """Decision notices nobody answered in time."""
    return list(
        db_session.scalars(
            select(Notice).where(
                Notice.status.in_((*OPEN_STATES, NoticeStatus.SCHEDULED.value)),
                Notice.expires_at.is_not(None),
                Notice.expires_at <= now,
            )
        )
    )


def backoff(attempts: int) -> timedelta:
    """Wait before the next try: 5 s, 10 s, 20 s … capped at 10 minutes."""
    return timedelta(seconds=min(600, 5 * 2 ** max(0, attempts - 1)))
