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
from gateway.conversation.engine import reply_from_message
from gateway.conversation.models import Conversation, Direction, Message, SenderType, Status
from knowledge import service as kb_service
from knowledge.models import Entry
from knowledge.schemas import EntryUpdate
from knowledge.views import get_live_index

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
def claim(public_id: str, agent: CurrentAgent, request: Request, db_session: DbSession) -> ConversationOut:
    """Take a waiting conversation; the bot falls silent."""
    conversation = _get(db_session, public_id)
    if conversation.status != Status.PENDING_HUMAN.value:
        raise HTTPException(status_code=409, detail=f"conversation is {conversation.status}, not waiting")
    flows.claim(db_session=db_session, conversation=conversation, agent_id=agent.id)
    joined = conversations.add_system_message(
        db_session=db_session,
        conversation=conversation,
        kind="agent_joined",
        text=texts.AGENT_JOINED.format(name=agent.display_name),
    )
    db_session.commit()
    _push(request, db_session, conversation, joined)
    return _conversation_out(conversation)


@router.post("/conversations/{public_id}/messages", response_model=MessageOut, status_code=201)
def reply(public_id: str, body: ReplyIn, agent: CurrentAgent, request: Request, db_session: DbSession) -> MessageOut:
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
    if not body.private:
        _push(request, db_session, conversation, message)
    return _message_out(message, conversation.public_id)


@router.post("/conversations/{public_id}/resolve", response_model=ConversationOut)
def resolve(public_id: str, agent: CurrentAgent, request: Request, db_session: DbSession) -> ConversationOut:
    """Close the conversation; the customer is asked how easy it was (CES)."""
    conversation = _get(db_session, public_id)
    _own(conversation, agent)
    flows.resolve(db_session=db_session, conversation=conversation)
    ces = conversations.add_system_message(
        db_session=db_session, conversation=conversation, kind="ces", text=texts.CES_QUESTION
    )
    db_session.commit()
    _push(request, db_session, conversation, ces)
    return _conversation_out(conversation)


def _push(request: Request, db_session: DbSession, conversation: Conversation, message: Message) -> None:
    """Push a committed message to the customer's live channel (the outbox already holds it)."""
    source_id = conversations.get_source_id(db_session=db_session, conversation=conversation)
    if source_id is not None:
        request.app.state.delivery.deliver_from_thread(conversation.channel, source_id, [reply_from_message(message)])


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


# -- the agent workspace: live transcript, transfer, knowledge (agent view), assist, paraphrases, callbacks ----


class AgentBrief(BaseModel):
    id: int
    username: str
    display_name: str
    presence: str


class TransferIn(BaseModel):
    agent_id: int


class KbHitOut(BaseModel):
    id: str
    title: str
    answer: str
    agent_note: str
    audience: str
    confidence: float


class ParaphraseIn(BaseModel):
    text: str = Field(min_length=1, max_length=500)


class CallbackOut(BaseModel):
    id: int
    conversation_id: str
    phone: str
    slot_start: datetime
    slot_end: datetime
    status: str


class CallbackStatusIn(BaseModel):
    status: Literal["called", "no_answer", "done"]


@router.get("/me", response_model=AgentOut)
def me(agent: CurrentAgent) -> AgentOut:
    """Who is logged in (the console starts here)."""
    return _agent_out(agent)


@router.get("/agents", response_model=list[AgentBrief])
def list_agents(agent: CurrentAgent, db_session: DbSession) -> list[AgentBrief]:
    """Colleagues to transfer to."""
    return [
        AgentBrief(id=a.id, username=a.username, display_name=a.display_name, presence=a.presence)
        for a in service.get_all(db_session=db_session)
    ]


@router.get("/conversations/{public_id}/messages", response_model=list[MessageOut])
def list_messages(public_id: str, agent: CurrentAgent, db_session: DbSession, after: int = 0) -> list[MessageOut]:
    """The transcript after a message id (the console polls this while a conversation is open)."""
    conversation = _get(db_session, public_id)
    rows = conversations.get_messages(db_session=db_session, conversation_id=conversation.id, include_private=True)
    return [_message_out(m, conversation.public_id) for m in rows if m.id > after]


@router.post("/conversations/{public_id}/transfer", response_model=ConversationOut)
def transfer(public_id: str, body: TransferIn, agent: CurrentAgent, db_session: DbSession) -> ConversationOut:
    """Hand the conversation to another agent; only its holder may."""
    conversation = _get(db_session, public_id)
    _own(conversation, agent)
    target = db_session.get(Agent, body.agent_id)
    if target is None:
        raise HTTPException(status_code=404, detail="no such agent")
    try:
        flows.transition(conversation, Status.HUMAN, agent_id=target.id)
    except flows.IllegalTransition as exc:
        raise HTTPException(status_code=409, detail=str(exc)) from exc
    conversations.add_message(
        db_session=db_session,
        conversation=conversation,
        direction=Direction.OUT,
        sender_type=SenderType.SYSTEM,
        text=f"{agent.display_name} 将会话转给了 {target.display_name}",
        kind="info",
        private=True,
    )
    db_session.commit()
    return _conversation_out(conversation)


@router.get("/knowledge/search", response_model=list[KbHitOut])
def knowledge_search(q: str, request: Request, agent: CurrentAgent, db_session: DbSession) -> list[KbHitOut]:
    """The same knowledge base, agent view: agent notes and agent-only entries included."""
    if not q.strip() or len(q) > 2000:
        raise HTTPException(status_code=422, detail="the query is empty or too long")
    return _agent_hits(request, db_session, q)


@router.get("/conversations/{public_id}/assist", response_model=list[KbHitOut])
def assist(public_id: str, request: Request, agent: CurrentAgent, db_session: DbSession) -> list[KbHitOut]:
    """Entries for the customer's last message, without searching (agent assist)."""
    conversation = _get(db_session, public_id)
    rows = conversations.get_messages(db_session=db_session, conversation_id=conversation.id, include_private=False)
    last = next((m for m in reversed(rows) if m.direction == Direction.IN.value and m.text.strip()), None)
    return _agent_hits(request, db_session, last.text) if last is not None else []


@router.post("/knowledge/{kb_id}/paraphrases", response_model=KbHitOut, status_code=201)
def save_paraphrase(kb_id: str, body: ParaphraseIn, agent: CurrentAgent, db_session: DbSession) -> KbHitOut:
    """The customer's wording becomes a paraphrase of the right entry (versioned, live in the index at once)."""
    entry = kb_service.get_by_external_id(db_session=db_session, external_id=kb_id)
    if entry is None:
        raise HTTPException(status_code=404, detail="no such entry")
    text = body.text.strip()
    similar = [s.text for s in entry.similar]
    if text and text not in similar and text != entry.title:
        kb_service.update(
            db_session=db_session,
            entry=entry,
            entry_in=EntryUpdate(similar=[*similar, text]),
            actor=f"agent:{agent.username}",
        )
        db_session.commit()
    return _hit_out(entry, 1.0)


@router.get("/callbacks", response_model=list[CallbackOut])
def list_callbacks(agent: CurrentAgent, db_session: DbSession) -> list[CallbackOut]:
    """Requested callbacks, soonest slot first."""
    return [
        CallbackOut(
            id=cb.id,
            conversation_id=public_id,
            phone=cb.phone,
            slot_start=cb.slot_start,
            slot_end=cb.slot_end,
            status=cb.status,
        )
        for cb, public_id in conversations.get_callbacks(db_session=db_session)
    ]


@router.post("/callbacks/{callback_id}", response_model=CallbackOut)
def update_callback(
    callback_id: int, body: CallbackStatusIn, agent: CurrentAgent, db_session: DbSession
) -> CallbackOut:
    """Mark a callback called, not answered or done."""
    row = conversations.get_callback(db_session=db_session, callback_id=callback_id)
    if row is None:
        raise HTTPException(status_code=404, detail="no such callback")
    row.status = body.status
    db_session.commit()
    conversation = db_session.get(Conversation, row.conversation_id)
    return CallbackOut(
        id=row.id,
        conversation_id=conversation.public_id if conversation else "",
        phone=row.phone,
        slot_start=row.slot_start,
        slot_end=row.slot_end,
        status=row.status,
    )


def _agent_hits(request: Request, db_session: DbSession, q: str) -> list[KbHitOut]:
    live = get_live_index(request)
    try:
        outcome = kb_service.search(index=live.index, query=q, audience="agent", limit=5)
    except ValueError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from exc
    entries = kb_service.hydrate(db_session=db_session, entry_ids=[h.entry_id for h in outcome.hits])
    return [_hit_out(entries[h.entry_id], h.confidence) for h in outcome.hits if h.entry_id in entries]


def _hit_out(entry: Entry, confidence: float) -> KbHitOut:
    return KbHitOut(
        id=entry.external_id,
        title=entry.title,
        answer=entry.answer,
        agent_note=entry.agent_note,
        audience=str(entry.audience),
        confidence=round(confidence, 4),
    )
