"""`POST /api/v1/events` for the operator's systems, and the one-tap confirm page linked from SMS and WeChat."""

import hmac
import html
from typing import Annotated, Literal

import anyio.from_thread
from fastapi import APIRouter, Form, Header, HTTPException, Request
from fastapi.responses import HTMLResponse

from common.db import utcnow
from common.web import DbSession
from gateway.clients.billing import Billing
from gateway.notices import flows, service
from gateway.notices.models import OPEN_STATES
from gateway.notices.schemas import EventBatchIn, EventBatchOut, EventIn, EventOut
from gateway.notices.settings import NoticeSettings
from gateway.settings import GatewaySettings

router = APIRouter(tags=["notices"])


def billing_for(request: Request, db_session: DbSession) -> Billing:
    """The operator's billing API when configured, else the demo billing system in our database."""
    settings: NoticeSettings = request.app.state.notice_settings
    return settings.billing(db_session)


def _require_key(request: Request, authorization: str | None) -> None:
    settings: NoticeSettings = request.app.state.notice_settings
    expected = settings.api_key.get_secret_value() if settings.api_key is not None else ""
    scheme, _, presented = (authorization or "").partition(" ")
    if not expected or scheme.lower() != "bearer" or not hmac.compare_digest(presented, expected):
        raise HTTPException(status_code=401, detail="events API key required", headers={"WWW-Authenticate": "Bearer"})


@router.post("/api/v1/events", response_model=EventOut, status_code=202)
def post_event(
    body: EventIn,
    request: Request,
    db_session: DbSession,
    authorization: Annotated[str | None, Header()] = None,
) -> EventOut:
    """A business event from the operator's systems; it becomes a notice if a rule applies (idempotent on `key`)."""
    _require_key(request, authorization)
    try:
        out, sent = _accept(request, db_session, body)
    except flows.UnknownEventType as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from exc
    db_session.commit()
    if sent is not None:
        anyio.from_thread.run(request.app.state.notices.announce, [sent])
    return out


@router.post("/api/v1/events/batch", response_model=EventBatchOut, status_code=202)
def post_events(
    body: EventBatchIn,
    request: Request,
    db_session: DbSession,
    authorization: Annotated[str | None, Header()] = None,
) -> EventBatchOut:
    """Many events in one request and one transaction (nightly exports, scans): one result per event, in order.

    An event of an unknown type is refused alone (`outcome: rejected`); the others are stored.
    """
    _require_key(request, authorization)
    results: list[EventOut] = []
    sent: list[flows.Sent] = []
    for event_in in body.events:
        try:
            with db_session.begin_nested():
                out, delivered = _accept(request, db_session, event_in)
        except flows.UnknownEventType as exc:
            results.append(EventOut(event_id=None, key=event_in.key or "", outcome="rejected", detail=str(exc)[:200]))
            continue
        results.append(out)
        if delivered is not None:
            sent.append(delivered)
    db_session.commit()
    if sent:
        anyio.from_thread.run(request.app.state.notices.announce, sent)
    return EventBatchOut(results=results)


def _accept(request: Request, db_session: DbSession, event_in: EventIn) -> tuple[EventOut, flows.Sent | None]:
    gateway_settings: GatewaySettings = request.app.state.gateway_settings
    accepted = flows.accept_event(
        db_session=db_session,
        event_in=event_in,
        settings=request.app.state.notice_settings,
        zone=gateway_settings.zone,
    )
    notice = accepted.notice
    sent = None
    if notice is not None and not accepted.replayed and notice.next_attempt_at <= utcnow():
        # Due now: delivered in the same transaction that stores the event (all or nothing), not at the next poll.
        sent = flows.send(db_session=db_session, notice=notice, settings=request.app.state.notice_settings)
    out = EventOut(
        event_id=accepted.event.id,
        key=accepted.event.key,
        outcome=accepted.event.outcome,
        detail=accepted.event.detail,
        notice_id=notice.id if notice else None,
        notice_status=notice.status if notice else None,
        replayed=accepted.replayed,
    )
    return out, sent


@router.get("/notices/{token}", response_class=HTMLResponse)
def confirm_page(token: str, db_session: DbSession) -> HTMLResponse:
    """The notice with confirm / decline buttons (opened from an SMS or a WeChat template message)."""
    notice = service.get_by_token(db_session=db_session, token=token)
    if notice is None:
        raise HTTPException(status_code=404, detail="no such notice")
    if notice.status not in OPEN_STATES or not notice.asks_decision:
        return HTMLResponse(_page(notice.text, _STATUS_TEXT.get(notice.status, "该通知已处理。"), token=None))
    return HTMLResponse(_page(notice.text, "", token=token))


@router.post("/notices/{token}", response_class=HTMLResponse)
def confirm_page_decision(
    token: str,
    decision: Annotated[Literal["confirm", "decline"], Form()],
    request: Request,
    db_session: DbSession,
) -> HTMLResponse:
    """One tap: the decision is recorded once (the token is single-use: a decided notice accepts no other)."""
    notice = service.get_by_token(db_session=db_session, token=token)
    if notice is None:
        raise HTTPException(status_code=404, detail="no such notice")
    if notice.status in OPEN_STATES and notice.asks_decision:
        flows.decide(db_session=db_session, notice=notice, decision=decision, billing=billing_for(request, db_session))
        db_session.commit()
    return HTMLResponse(_page(notice.text, _STATUS_TEXT.get(notice.status, "该通知已处理。"), token=None))


_STATUS_TEXT = {
    "confirmed": "已为您办理，感谢确认。",
    "declined": "好的，已为您保留，不做变更。",
    "expired": "该通知已过期。",
}


def _page(text: str, status: str, token: str | None) -> str:
    buttons = (
        f'<form method="post" action="/notices/{html.escape(token)}">'
        '<button name="decision" value="confirm" data-testid="notice-confirm">确认</button> '
        '<button name="decision" value="decline" data-testid="notice-decline">暂不</button></form>'
        if token
        else ""
    )
    return (
        '<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1"><title>星河移动 通知</title>'
        "<style>body{font-family:sans-serif;max-width:32rem;margin:2rem auto;padding:0 1rem}"
        "button{font-size:1.1rem;padding:.6rem 1.4rem;margin:.3rem}</style></head><body>"
        f'<p data-testid="notice-text">{html.escape(text)}</p>'
        f'<p data-testid="notice-status">{html.escape(status)}</p>{buttons}</body></html>'
    )
