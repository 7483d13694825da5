"""The shapes every channel shares with the core: connectors receive an inbound handler, never the core."""

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field

ReplyKind = Literal[
    "answer",
    "suggest",
    "clarify",
    "handoff",
    "form",
    "notice",
    "notice_confirmed",
    "notice_declined",
    "feedback_recorded",
    "greet",
    "thanks",
    "goodbye",
    "info",
    "agent",
    # System messages the console writes (agent joined/left, the effort question after resolution).
    "agent_joined",
    "agent_left",
    "ces",
]


class ReplyOption(BaseModel):
    title: str
    payload: str


class HandoffInfo(BaseModel):
    tier: Literal["human_text", "human_voice"]
    reason: str
    priority: Literal["normal", "high"] = "normal"


class Reply(BaseModel):
    """One message to the customer, with a machine-readable kind so every channel can render it."""

    text: str
    kind: ReplyKind
    kb_id: str | None = None
    options: list[ReplyOption] = Field(default_factory=list)
    handoff: HandoffInfo | None = None
    message_id: int | None = None
    # A page the customer can open instead of answering in the chat (e.g. a notice's confirm page).
    url: str | None = None


class InboundMessage(BaseModel):
    channel: str = Field(min_length=1, max_length=32)
    sender: str = Field(min_length=1, max_length=128)
    text: str
    message_id: str | None = Field(default=None, max_length=128)
    metadata: dict[str, Any] = Field(default_factory=dict)


class InboundResult(BaseModel):
    conversation_id: str
    status: str
    replies: list[Reply]
    replayed: bool = False
    # The stored id of the customer's message (what the channel acks and replays from).
    message_id: int | None = None


class InboundHandler(Protocol):
    """The core's entry point for one inbound message.

    `stored` is called as soon as the message is durably stored, before it is answered: a channel whose
    platform needs a quick acknowledgement (WeChat's 5 s) may acknowledge from then on and deliver the
    answer later, and nothing is lost if the process dies in between.
    """

    def __call__(
        self, message: InboundMessage, /, *, stored: Callable[[], None] | None = None
    ) -> Coroutine[Any, Any, InboundResult]: ...


# (channel, sender, after message id) -> what the customer was sent since, bot and agent alike.
OutboundFetcher = Callable[[str, str, int], Awaitable[list[Reply]]]
