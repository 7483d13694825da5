"""What the operator's systems send to `POST /api/v1/events`."""

import re
from typing import Any

from pydantic import BaseModel, Field, model_validator

_ID = re.compile(r"^[A-Za-z0-9_.:@\-]{1,128}$")


class CustomerRef(BaseModel):
    """Who the event is about: a channel identity (preferred) or a phone number (reached by SMS)."""

    channel: str = Field(default="sms", min_length=1, max_length=32, pattern=r"^[a-z]+$")
    id: str = Field(default="", max_length=128)
    phone: str | None = Field(default=None, pattern=r"^\+?\d{6,15}$")
    name: str | None = Field(default=None, max_length=100)

    @model_validator(mode="after")
    def _identified(self) -> "CustomerRef":
        if not self.id and self.phone:
            self.id = self.phone
        if not self.id or not _ID.match(self.id):
            raise ValueError("customer needs an `id` on its channel (letters, digits, _.:@-) or a `phone`")
        return self


class EventIn(BaseModel):
    type: str = Field(min_length=1, max_length=64)
    # Idempotency key: the same event sent twice becomes one notice.
    key: str | None = Field(default=None, min_length=1, max_length=128)
    customer: CustomerRef
    data: dict[str, Any] = Field(default_factory=dict)
    # Urgent events ignore quiet hours and the daily limit.
    urgent: bool = False


class EventBatchIn(BaseModel):
    events: list[EventIn] = Field(min_length=1, max_length=1000)


class EventOut(BaseModel):
    # None when the event was refused (`outcome: rejected`, batch only): nothing was stored for it.
    event_id: int | None
    key: str
    outcome: str
    detail: str = ""
    notice_id: int | None = None
    notice_status: str | None = None
    replayed: bool = False


class EventBatchOut(BaseModel):
    results: list[EventOut]


class DecisionOut(BaseModel):
    notice_id: int
    notice: str
    status: str
    action_result: dict[str, Any] = Field(default_factory=dict)
