"""The widget's WebSocket frame protocol: one JSON object per text frame, told apart by ``type``.

Client → server
  hello    {"type":"hello","token":str|null,"last_seen_id":int,"history":bool}
           the session request, always the first frame. No token: the server issues a new visitor.
  message  {"type":"message","id":"<client uuid>","text":str}   a customer message (id = idempotency key)
  ack      {"type":"ack","message_id":int}                      the client has shown server message N
  typing   {"type":"typing","on":bool}                          the customer is typing
  ces      {"type":"ces","score":1..7}                          the effort score after resolution
  ping     {"type":"ping"}

Server → client
  welcome  {"type":"welcome","visitor":str,"token":str}         the session confirmation (store the token)
  history  {"type":"history","items":[ChatItem]}                if hello asked for it
  message  {"type":"message","message":ChatItem}                anything sent to the customer: bot answers,
           agent replies, agent joined/left, notices, the CES question — each with its persisted id
  ack      {"type":"ack","id":"<client uuid>",...}              the customer message is stored (and answered)
  typing   {"type":"typing","on":bool}                          the bot/agent is preparing a reply
  error    {"type":"error","code":str,"detail":str,"id":...}    codes: too_large, bad_json, bad_frame,
           bad_token (then the socket closes with 4401), rejected, server_error, not_allowed
  pong, ces_recorded {"score":int}

Replay: every server message carries ``message.message_id``; after a reconnect the client says
``last_seen_id`` in hello and the server resends everything after it. The client resends unacked messages
with the same id; the core is idempotent on it, so nothing is answered twice and nothing is lost.
"""

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from common.channels import HandoffInfo, Reply, ReplyKind, ReplyOption

Sender = Literal["customer", "bot", "agent", "system"]
CLIENT_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
# Kinds the customer should read as coming from the service itself rather than from the bot.
SYSTEM_KINDS = frozenset({"info", "notice", "notice_confirmed", "notice_declined", "agent_joined", "agent_left", "ces"})


class ChatItem(BaseModel):
    """A message as the widget shows it: a Reply plus who it is from (the customer's own have kind "text")."""

    text: str
    kind: ReplyKind | Literal["text"]
    sender: Sender = "bot"
    kb_id: str | None = None
    options: list[ReplyOption] = Field(default_factory=list)
    handoff: HandoffInfo | None = None
    message_id: int | None = None
    url: str | None = None


def sender_of(kind: str) -> Sender:
    """Who a reply of this kind appears to come from."""
    if kind == "agent":
        return "agent"
    if kind == "text":
        return "customer"
    return "system" if kind in SYSTEM_KINDS else "bot"


def chat_item(reply: Reply) -> ChatItem:
    """A reply as a widget message."""
    return ChatItem(**reply.model_dump(), sender=sender_of(reply.kind))


class _Frame(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Hello(_Frame):
    type: Literal["hello"]
    token: str | None = Field(default=None, max_length=200)
    last_seen_id: int = Field(default=0, ge=0)
    history: bool = False


class UserMessage(_Frame):
    type: Literal["message"]
    id: str = Field(pattern=CLIENT_ID_PATTERN)
    text: str = Field(max_length=20_000)


class ClientAck(_Frame):
    type: Literal["ack"]
    message_id: int = Field(ge=0)


class Typing(_Frame):
    type: Literal["typing"]
    on: bool = True


class Ces(_Frame):
    type: Literal["ces"]
    score: int = Field(ge=1, le=7)


class Ping(_Frame):
    type: Literal["ping"]


ClientFrame = Annotated[Hello | UserMessage | ClientAck | Typing | Ces | Ping, Field(discriminator="type")]
client_frame: TypeAdapter[Any] = TypeAdapter(ClientFrame)


def error(code: str, detail: str, frame_id: str | None = None) -> dict[str, Any]:
    """An error frame."""
    return {"type": "error", "code": code, "detail": detail, "id": frame_id}


def message_frame(item: ChatItem) -> dict[str, Any]:
    """A message frame."""
    return {"type": "message", "message": item.model_dump(mode="json")}
