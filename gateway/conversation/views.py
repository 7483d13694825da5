"""The internal API the action server calls (bearer KEFU_INTERNAL_TOKEN); never exposed to customers."""

import hmac
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, HTTPException, Request
from pydantic import BaseModel, Field, field_validator

from common.db import utcnow
from common.web import DbSession
from gateway.conversation import service
from gateway.conversation.models import Conversation
from gateway.notices import flows as notice_flows
from gateway.notices import service as notice_service
from gateway.notices.schemas import DecisionOut
from gateway.notices.views import billing_for
from gateway.settings import GatewaySettings, parse_hours


def require_internal(request: Request, authorization: Annotated[str | None, Header()] = None) -> None:
    """Only the action server, holding the shared secret, may call these routes."""
    settings: GatewaySettings = request.app.state.gateway_settings
    if settings.internal_token is None:
        raise HTTPException(status_code=503, detail="KEFU_INTERNAL_TOKEN is not configured")
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token, settings.internal_token.get_secret_value()):
        raise HTTPException(status_code=401, detail="internal token required")


router = APIRouter(prefix="/api/v1/internal", tags=["internal"], dependencies=[Depends(require_internal)])


class Availability(BaseModel):
    agents_online: int
    service_open: bool
    queue_length: int


class FeedbackIn(BaseModel):
    helpful: bool


class FeedbackOut(BaseModel):
    recorded: bool
    kb_id: str | None


class CallbackIn(BaseModel):
    phone: str = Field(pattern=r"^1[3-9]\d{9}$|^0\d{2,3}-?\d{7,8}$")
    slot_start: datetime
    slot_end: datetime

    @field_validator("slot_start", "slot_end")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("needs a timezone offset")
        return value


class CallbackOut(BaseModel):
    callback_id: int


class DecisionIn(BaseModel):
    decision: Literal["confirm", "decline"]


def _conversation(db_session: DbSession, public_id: str) -> Conversation:
    conversation = service.get_by_public_id(db_session=db_session, public_id=public_id)
    if conversation is None:
        raise HTTPException(status_code=404, detail="no such conversation")
    return conversation


@router.get("/availability", response_model=Availability)
def availability(request: Request, db_session: DbSession) -> Availability:
    """Whether a human can take a conversation now."""
    settings: GatewaySettings = request.app.state.gateway_settings
    start, end = parse_hours(settings.human_hours)
    local = utcnow().astimezone(settings.zone).time()
    return Availability(
        agents_online=service.count_agents_online(db_session=db_session),
        service_open=start <= local < end,
        queue_length=len(service.get_waiting(db_session=db_session)),
    )


@router.post("/conversations/{public_id}/feedback", response_model=FeedbackOut)
def feedback(public_id: str, body: FeedbackIn, db_session: DbSession) -> FeedbackOut:
    """Helpful or not, on the bot's latest answer in the conversation."""
    conversation = _conversation(db_session, public_id)
    row = service.record_feedback(
        db_session=db_session, conversation=conversation, kind="helpful" if body.helpful else "unhelpful"
    )
    db_session.commit()
    return FeedbackOut(recorded=True, kb_id=row.kb_entry_id)


@router.post("/conversations/{public_id}/callbacks", response_model=CallbackOut, status_code=201)
def callback(public_id: str, body: CallbackIn, request: Request, db_session: DbSession) -> CallbackOut:
    """Book a call back within the callback hours."""
    settings: GatewaySettings = request.app.state.gateway_settings
    start, end = parse_hours(settings.callback_hours)
    local_start, local_end = body.slot_start.astimezone(settings.zone), body.slot_end.astimezone(settings.zone)
    if not (
        local_end > local_start
        and local_start.date() == local_end.date()
        and start <= local_start.time()
        and local_end.time() <= end
    ):
        raise HTTPException(status_code=422, detail=f"a callback slot must lie within {settings.callback_hours}")
    conversation = _conversation(db_session, public_id)
    row = service.create_callback(
        db_session=db_session,
        conversation=conversation,
        phone=body.phone,
        slot_start=body.slot_start,
        slot_end=body.slot_end,
    )
    db_session.commit()
    return CallbackOut(callback_id=row.id)


@router.post("/conversations/{public_id}/notice-decision", response_model=DecisionOut)
def notice_decision(public_id: str, body: DecisionIn, request: Request, db_session: DbSession) -> DecisionOut:
    """Confirm or decline the notice waiting for this customer's decision (a confirmed action is carried out)."""
    conversation = _conversation(db_session, public_id)
    notice = notice_service.get_open_decision(db_session=db_session, contact_id=conversation.contact_id)
    if notice is None:
        raise HTTPException(status_code=404, detail="no notice is waiting for a decision")
    notice = notice_flows.decide(
        db_session=db_session, notice=notice, decision=body.decision, billing=billing_for(request, db_session)
    )
    db_session.commit()
    if notice.status == "expired":
        raise HTTPException(status_code=404, detail="the notice expired before the decision")
    return DecisionOut(
        notice_id=notice.id, notice=notice.name, status=notice.status, action_result=notice.action_result
    )
