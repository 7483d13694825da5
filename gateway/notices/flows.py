"""Event → notice → delivery → decision.

Exactly once: a notice is delivered by writing its message into the customer's conversation (the outbox every
channel reads from) in the same transaction that marks it sent, so a crash either keeps both or neither.
Pushing to a live socket or WeChat happens after the commit and may repeat; clients deduplicate by message id.
"""

import logging
import secrets
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from common.channels import Reply, ReplyOption
from common.db import utcnow
from gateway.clients.billing import Billing, BillingError
from gateway.conversation import service as conversations
from gateway.conversation.models import Contact, Direction, SenderType
from gateway.notices import service
from gateway.notices.models import BusinessEvent, Notice, NoticeStatus, ScanRun
from gateway.notices.rules import RULES
from gateway.notices.scans import Scan
from gateway.notices.schemas import CustomerRef, EventIn
from gateway.notices.settings import NoticeSettings, quiet_window
from knowledge import service as kb_service

log = logging.getLogger(__name__)


class UnknownEventType(ValueError):
    """No rule turns this event type into a notice."""


@dataclass
class Accepted:
    event: BusinessEvent
    notice: Notice | None
    replayed: bool = False


@dataclass
class Sent:
    notice_id: int
    conversation_public_id: str
    channel: str
    source_id: str
    reply: Reply
    pending_notice: str | None


def accept_event(
    *, db_session: Session, event_in: EventIn, settings: NoticeSettings, zone: ZoneInfo, now: datetime | None = None
) -> Accepted:
    """Store the event and, if a rule applies and nothing forbids it, the notice it becomes (not yet sent)."""
    now = now or utcnow()
    rule = RULES.get(event_in.type)
    if rule is None:
        raise UnknownEventType(f"unknown event type {event_in.type!r}; known: {', '.join(sorted(RULES))}")
    key = event_in.key or secrets.token_hex(16)
    earlier = service.get_event_by_key(db_session=db_session, key=key)
    if earlier is not None:
        return Accepted(earlier, service.get_by_event(db_session=db_session, event_id=earlier.id), replayed=True)
    event = BusinessEvent(
        key=key,
        type=event_in.type,
        customer=event_in.customer.model_dump(exclude_none=True),
        data=event_in.data,
        urgent=event_in.urgent,
        received_at=now,
    )
    db_session.add(event)
    db_session.flush()
    contact, channel, source_id = _recipient(db_session, event_in)
    data = {"type": event_in.type, **{k: str(v) for k, v in event_in.data.items()}}
    dedup_key = rule.dedup_key(data)
    if service.get_live_duplicate(
        db_session=db_session, contact_id=contact.id, dedup_key=dedup_key, since=now - rule.ttl
    ):
        return _ignored(event, "duplicate of a notice that still stands")
    if (
        not event_in.urgent
        and service.count_recent(db_session=db_session, contact_id=contact.id, since=now - timedelta(days=1))
        >= settings.max_per_day
    ):
        return _ignored(event, f"rate limit: {settings.max_per_day} notices a day")
    kb_answer = None
    if rule.kb_id:
        entry = kb_service.get_servable(db_session=db_session, external_id=rule.kb_id, now=now)
        kb_answer = entry.answer if entry is not None else None
    notice = Notice(
        event_id=event.id,
        contact_id=contact.id,
        name=rule.name,
        dedup_key=dedup_key,
        channel=channel,
        source_id=source_id,
        kb_entry_id=rule.kb_id if kb_answer else None,
        text=rule.text(data, kb_answer),
        asks_decision=rule.asks_decision,
        action={"type": rule.action, "package": data.get("package", ""), "phone": contact.phone or ""}
        if rule.action
        else {},
        token=secrets.token_urlsafe(24),
        next_attempt_at=now if event_in.urgent else _after_quiet_hours(now, settings, zone),
        expires_at=now + rule.ttl,
        created_at=now,
    )
    db_session.add(notice)
    db_session.flush()
    return Accepted(event, notice)


def send(*, db_session: Session, notice: Notice, settings: NoticeSettings, now: datetime | None = None) -> Sent:
    """Deliver a scheduled notice into the customer's conversation (the caller commits)."""
    now = now or utcnow()
    contact = db_session.get(Contact, notice.contact_id)
    assert contact is not None
    conversation = conversations.get_or_open(db_session=db_session, contact_id=contact.id, channel=notice.channel)
    reply = to_reply(notice, settings)
    message = conversations.add_message(
        db_session=db_session,
        conversation=conversation,
        direction=Direction.OUT,
        sender_type=SenderType.SYSTEM,
        text=reply.text,
        kind="notice",
        kb_entry_id=notice.kb_entry_id,
        payload={
            "options": [o.model_dump() for o in reply.options],
            "url": reply.url,
            "notice_id": notice.id,
            "notice": notice.name,
        },
    )
    notice.status = NoticeStatus.SENT.value
    notice.sent_at = now
    notice.attempts += 1
    notice.message_id = message.id
    notice.conversation_id = conversation.id
    db_session.flush()
    reply = reply.model_copy(update={"message_id": message.id})
    return Sent(
        notice_id=notice.id,
        conversation_public_id=conversation.public_id,
        channel=notice.channel,
        source_id=notice.source_id,
        reply=reply,
        pending_notice=notice.name if notice.asks_decision else None,
    )


def fail(*, notice: Notice, error: str, settings: NoticeSettings, now: datetime | None = None) -> None:
    """Record a failed attempt; retry later with backoff, or give up after the last attempt."""
    now = now or utcnow()
    notice.attempts += 1
    notice.last_error = error[:300]
    if notice.attempts >= settings.max_attempts:
        notice.status = NoticeStatus.FAILED.value
    else:
        notice.status = NoticeStatus.SCHEDULED.value
        notice.next_attempt_at = now + service.backoff(notice.attempts)


def decide(
    *, db_session: Session, notice: Notice, decision: str, billing: Billing, now: datetime | None = None
) -> Notice:
    """Record confirm / decline once; a confirmed action is carried out by the billing system."""
    now = now or utcnow()
    if notice.expires_at is not None and notice.expires_at <= now:
        notice.status = NoticeStatus.EXPIRED.value
        db_session.flush()
        return notice
    notice.decided_at = now
    if decision == "confirm":
        notice.status = NoticeStatus.CONFIRMED.value
        if notice.action.get("type") == "close_package":
            try:
                notice.action_result = billing.close_package(
                    phone=str(notice.action.get("phone", "")), package=str(notice.action.get("package", ""))
                )
            except BillingError as exc:
                # The customer's decision stands; staff finish the action (the result says why).
                log.warning("notice %s confirmed but billing failed: %s", notice.id, exc)
                notice.action_result = {"error": str(exc)}
    else:
        notice.status = NoticeStatus.DECLINED.value
    db_session.flush()
    return notice


def expire(*, db_session: Session, now: datetime | None = None) -> int:
    """Close the notices nobody answered in time."""
    rows = service.get_expired(db_session=db_session, now=now or utcnow())
    for notice in rows:
        notice.status = NoticeStatus.EXPIRED.value
    db_session.flush()
    return len(rows)


def to_reply(notice: Notice, settings: NoticeSettings) -> Reply:
    """How a channel shows the notice: text, confirm / decline buttons and a confirm-page link."""
    rule = RULES.get(next((t for t, r in RULES.items() if r.name == notice.name), ""))
    options = [ReplyOption(title=t, payload=p) for t, p in (rule.options if rule and notice.asks_decision else ())]
    url = f"{settings.public_url.rstrip('/')}/notices/{notice.token}" if notice.asks_decision else None
    return Reply(kind="notice", text=notice.text, kb_id=notice.kb_entry_id, options=options, url=url)


def _recipient(db_session: Session, event_in: EventIn) -> tuple[Contact, str, str]:
    customer = event_in.customer
    known = (
        # Known only by a phone number (scans, billing events): the customer we already know by that number.
        db_session.scalar(select(Contact).where(Contact.phone == customer.phone).order_by(Contact.id).limit(1))
        if customer.channel == "sms" and customer.phone
        else None
    )
    contact = known or conversations.get_or_create_contact(
        db_session=db_session, channel=customer.channel, source_id=customer.id
    )
    if customer.phone and not contact.phone:
        contact.phone = customer.phone
    preferred = (contact.attributes or {}).get("preferred_channel")
    identities = {i.channel: i.source_id for i in contact.identities}
    if preferred in identities:
        return contact, preferred, identities[preferred]
    return contact, customer.channel, customer.id


@dataclass
class ScanResult:
    scan: str
    run_on: date
    # Whether this run was the day's scheduled one (claimed by this process); False for a run by hand.
    claimed: bool
    found: int = 0
    notices: int = 0
    ignored: int = 0
    rejected: int = 0


def claim_scan(*, db_session: Session, scan: str, run_on: date, now: datetime | None = None) -> ScanRun | None:
    """Today's run of a scan, if no process has claimed it yet (the unique row is the claim)."""
    run = ScanRun(scan=scan, run_on=run_on, started_at=now or utcnow())
    try:
        with db_session.begin_nested():
            db_session.add(run)
            db_session.flush()
    except IntegrityError:
        return None
    return run


def run_scan(
    *,
    db_session: Session,
    scan: Scan,
    billing: Billing,
    settings: NoticeSettings,
    zone: ZoneInfo,
    now: datetime | None = None,
) -> ScanResult:
    """Ask the billing system who matches the scan and turn each answer into an event (idempotent per day)."""
    now = now or utcnow()
    today = now.astimezone(zone).date()
    result = ScanResult(scan=scan.name, run_on=today, claimed=False)
    for hit in scan.query(billing, settings, today):
        result.found += 1
        phone = str(hit.get("phone", ""))
        try:
            event_in = EventIn(
                type=scan.event_type,
                key=f"scan:{scan.name}:{phone}:{today.isoformat()}"[:128],
                customer=CustomerRef(channel="sms", phone=phone),
                data={**{k: v for k, v in hit.items() if k != "phone"}, "date": today.isoformat()},
            )
        except ValidationError as exc:
            # One bad row from the billing system must not cost everyone else their notice.
            log.warning("scan %s: billing row for %r rejected: %s", scan.name, phone[:32], exc.errors()[:1])
            result.rejected += 1
            continue
        with db_session.begin_nested():
            accepted = accept_event(db_session=db_session, event_in=event_in, settings=settings, zone=zone, now=now)
        if accepted.notice is not None and not accepted.replayed:
            result.notices += 1
        elif not accepted.replayed:
            result.ignored += 1
    return result


def _after_quiet_hours(now: datetime, settings: NoticeSettings, zone: ZoneInfo) -> datetime:
    if not settings.quiet_hours:
        return now
    start, end = quiet_window(settings.quiet_hours)
    local = now.astimezone(zone)
    t = local.time()
    quiet = (start <= t or t < end) if start > end else (start <= t < end)
    if not quiet:
        return now
    morning = local.replace(hour=end.hour, minute=end.minute, second=0, microsecond=0)
    if morning <= local:
        morning += timedelta(days=1)
    return morning.astimezone(now.tzinfo)


def _ignored(event: BusinessEvent, why: str) -> Accepted:
    event.outcome = "ignored"
    event.detail = why[:200]
    log.info("event %s ignored: %s", event.key, why)
    return Accepted(event, None)
