"""The agent API: log in, presence, the waiting queue, claim, reply, resolve."""

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Header, HTTPException, Request, Response
from pydantic import BaseModel, Field

from common.db import utcnow
from common.web import DbSession
from gateway.agent import service
from gateway.agent.auth import CurrentAgent, clear_session_cookies, session_token, set_session_cookies
from gateway.agent.models import Agent, Presence
from gateway.conversation import flows, texts
from gateway.conversation import service as conversations
from gateway.conversation.models import Conversation, Direction, SenderType, Status

router = APIRouter(prefix="/api/v1/agent", tags=["agent"])




class LoginIn(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


class AgentOut(BaseModel):
    id: int
    username: str
    display_name: str
    role: str
    presence: str


class SessionOut(BaseModel):
    token: str
    csrf_token: str
    agent: AgentOut


class PresenceIn(BaseModel):
    presence: Presence


class ConversationOut(BaseModel):
    id: str
    channel: str
    status: str
    tier: str
    priority: str
    handoff_reason: str | None
    assignee_id: int | None
    waiting_since: datetime | None
    contact_id: int


class MessageOut(BaseModel):
    id: int
    conversation_id: str
    channel: str
    direction: str
    sender_type: str
    kind: str
    text: str
    kb_entry_id: str | None
    private: bool
    created_at: datetime


class ConversationDetail(ConversationOut):
    transcript: list[MessageOut]
    history: list[MessageOut] = Field(description="the contact's messages in every channel and conversation")


class ReplyIn(BaseModel):
    text: str = Field(min_length=1, max_length=5000)
    private: bool = False


def _agent_out(agent: Agent) -> AgentOut:
    return AgentOut(
        id=agent.id, username=agent.username, display_name=agent.display_name, role=agent.role, presence=agent.presence
    )


def _conversation_out(c: Conversation) -> ConversationOut:
    return ConversationOut(
        id=c.public_id,
        channel=c.channel,
        status=c.status,
        tier=c.tier,
        priority=c.priority,
        handoff_reason=c.handoff_reason,
        assignee_id=c.assignee_id,
        waiting_since=c.waiting_since,
        contact_id=c.contact_id,
    )


def _get(db_session: DbSession, public_id: str) -> Conversation:
    conversation = conversations.get_by_public_id(db_session=db_session, public_id=public_id)
    if conversation is None:
        raise HTTPException(status_code=404, detail="no such conversation")
    return conversation


def _own(conversation: Conversation, agent: Agent) -> None:
    if conversation.status != Status.HUMAN.value or conversation.assignee_id != agent.id:
        raise HTTPException(status_code=403, detail="this conversation is not assigned to you")


# Plain `def`: database work runs in FastAPI's threadpool, never on the event loop.
@router.post("/session", response_model=SessionOut)
def login(body: LoginIn, request: Request, response: Response, db_session: DbSession) -> SessionOut:
    """Exchange a username and password for a bearer token, also set as the console's session cookie."""
    try:
        agent = service.authenticate(db_session=db_session, username=body.username, password=body.password)
    except service.LoginFailed as exc:
        db_session.commit()  # keep the failure count
        raise HTTPException(status_code=401, detail=str(exc)) from exc
    token = service.open_session(db_session=db_session, agent=agent)
    db_session.commit()
    csrf = set_session_cookies(response, request, token)
    return SessionOut(token=token, csrf_token=csrf, agent=_agent_out(agent))


@router.delete("/session", status_code=204)
def logout(
    agent: CurrentAgent,
    request: Request,
    response: Response,
    db_session: DbSession,
    authorization: Annotated[str | None, Header()] = None,
) -> None:
    """End this session and go offline."""
    service.set_presence(db_session=db_session, agent=agent, presence=Presence.OFFLINE)
    token = session_token(request, authorization)
    if token:
        service.close_session(db_session=db_session, token=token)
    db_session.commit()
    clear_session_cookies(response)


@router.put("/presence", response_model=AgentOut)
def put_presence(body: PresenceIn, agent: CurrentAgent, db_session: DbSession) -> AgentOut:
    """Online agents receive handoffs; away and offline agents do not."""
    service.set_presence(db_session=db_session, agent=agent, presence=body.presence)
    db_session.commit()
    return _agent_out(agent)


@router.get("/conversations", response_model=list[ConversationOut])
def list_conversations(
    agent: CurrentAgent, db_session: DbSession, view: Literal["waiting", "mine"] = "waiting"
) -> list[ConversationOut]:
    """The waiting queue (priority, then waiting time), or the conversations this agent holds."""
    if view == "waiting":
        rows = conversations.get_waiting(db_session=db_session)
    else:
        rows = conversations.get_assigned(db_session=db_session, agent_id=agent.id)
    return [_conversation_out(c) for c in rows]


@router.get("/conversations/{public_id}", response_model=ConversationDetail)
def get_conversation(public_id: str, agent: CurrentAgent, db_session: DbSession) -> ConversationDetail:
    """The whole transcript including the bot's turns, and the contact's history across channels."""
    conversation = _get(db_session, public_id)
    transcript = conversations.get_messages(
        db_session=db_session, conversation_id=conversation.id, include_private=True
    )
    history = conversations.get_timeline(db_session=db_session, contact_id=conversation.contact_id)
    return ConversationDetail(
        **_conversation_out(conversation).model_dump(),
        transcript=[_message_out(m, conversation.public_id) for m in transcript],
        history=[_message_out(m, c.public_id) for c, m in history if not m.private],
    )


@router.post("/conversations/{public_id}/claim", response_model=ConversationOut)
def claim(public_id: str, agent: CurrentAgent, db_session: DbSession) -> ConversationOut:
    """Take a waiting conversation; the bot falls silent."""
    conversation = _get(db_session, public_id)
    if conversation.status != Status.PENDING_HUMAN.value:
        raise HTTPException(status_code=409, detail=f"conversation is {conversation.status}, not waiting")
    flows.claim(db_session=db_session, conversation=conversation, agent_id=agent.id)
    conversations.add_system_message(
        db_session=db_session, conversation=conversation, kind="agent_joined",
        text=texts.AGENT_JOINED.format(name=agent.display_name),
    )
    db_session.commit()
    return _conversation_out(conversation)


@router.post("/conversations/{public_id}/messages", response_model=MessageOut, status_code=201)
def reply(public_id: str, body: ReplyIn, agent: CurrentAgent, db_session: DbSession) -> MessageOut:
    """Write to the customer, or a private note other agents see."""
    conversation = _get(db_session, public_id)
    _own(conversation, agent)
    message = conversations.add_message(
        db_session=db_session,
        conversation=conversation,
        direction=Direction.OUT,
        sender_type=SenderType.AGENT,
        text=body.text,
        kind="agent",
        agent_id=agent.id,
        private=body.private,
    )
    if not body.private and conversation.first_human_reply_at is None:
        conversation.first_human_reply_at = utcnow()
    db_session.commit()
    return _message_out(message, conversation.public_id)


@router.post("/conversations/{public_id}/resolve", response_model=ConversationOut)
def resolve(public_id: str, agent: CurrentAgent, db_session: DbSession) -> ConversationOut:
    """Close the conversation; the customer is asked how easy it was (CES)."""
    conversation = _get(db_session, public_id)
    _own(conversation, agent)
    flows.resolve(db_session=db_session, conversation=conversation)
    conversations.add_system_message(db_session=db_session, conversation=conversation, kind="ces",
                                     text=texts.CES_QUESTION)
    db_session.commit()
    return _conversation_out(conversation)


def _message_out(m: object, public_id: str) -> MessageOut:
    return MessageOut(
        conversation_id=public_id,
        **{
            k: getattr(m, k)
            for k in (
                "id",
                "channel",
                "direction",
                "sender_type",
                "kind",
                "text",
                "kb_entry_id",
                "private",
                "created_at",
            )
        },
    )
