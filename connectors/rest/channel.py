"""`POST /api/v1/channels/rest/messages`: one customer message in, the bot's replies out.

The channel knows nothing of the core: it is given an inbound handler (like Rasa's input channels).
"""

import re
from typing import Any

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, Field, field_validator

from common.channels import InboundHandler, InboundMessage, InboundResult, OutboundFetcher, Reply

CHANNEL = "rest"
MAX_TEXT_CHARS = 20_000
_SENDER = re.compile(r"^[A-Za-z0-9_.:@\-]{1,128}$")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class RestMessage(BaseModel):
    sender: str = Field(description="the customer's stable id in the integrator's system", examples=["visitor-42"])
    text: str = Field(max_length=MAX_TEXT_CHARS, description="what the customer wrote")
    message_id: str | None = Field(
        default=None, max_length=128, description="idempotency key: a retry with the same id replays the same replies"
    )
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("sender")
    @classmethod
    def _sender(cls, value: str) -> str:
        if not _SENDER.match(value):
            raise ValueError("sender must be 1-128 characters of letters, digits and _.:@-")
        return value

    @field_validator("text")
    @classmethod
    def _text(cls, value: str) -> str:
        if not _CONTROL.sub("", value).strip():
            raise ValueError("text must not be empty")
        return value


def make_router(handle: InboundHandler, fetch: OutboundFetcher) -> APIRouter:
    """The channel's routes, bound to the core's inbound handler and outbound store."""
    router = APIRouter(prefix="/api/v1/channels/rest", tags=["channel: rest"])

    @router.post("/messages", response_model=InboundResult)
    async def post_message(body: RestMessage) -> InboundResult:
        """Deliver one customer message; the replies come back in the response."""
        try:
            return await handle(
                InboundMessage(
                    channel=CHANNEL,
                    sender=body.sender,
                    text=body.text,
                    message_id=body.message_id,
                    metadata=body.metadata,
                )
            )
        except ValueError as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from exc

    @router.get("/messages", response_model=list[Reply])
    async def get_messages(
        sender: str = Query(pattern=_SENDER.pattern), after: int = Query(default=0, ge=0)
    ) -> list[Reply]:
        """Poll for what the customer was sent after message id `after` (e.g. a human agent's replies)."""
        return await fetch(CHANNEL, sender, after)

    return router
