"""Pydantic shapes of the knowledge base: the JSONL exchange format, edits, and the two views."""

import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from knowledge.models import Audience, EntryStatus

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _clean_text(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("contains control characters")
    value = value.strip()
    if not value:
        raise ValueError("must not be empty")
    return value


def _clean_note(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("contains control characters")
    return value.strip()


Text = Annotated[str, Field(max_length=500), AfterValidator(_clean_text)]
LongText = Annotated[str, Field(max_length=20_000), AfterValidator(_clean_text)]
Note = Annotated[str, Field(max_length=20_000), AfterValidator(_clean_note)]
Tag = Annotated[str, Field(max_length=64), AfterValidator(_clean_text)]
ExternalId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,32}$")]


class _ValidityMixin(BaseModel):
    valid_from: datetime | None = None
    valid_to: datetime | None = None

    @field_validator("valid_from", "valid_to")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("needs a timezone offset, e.g. 2026-12-31T23:59:59+08:00")
        return value

    @model_validator(mode="after")
    def _ordered(self) -> "_ValidityMixin":
        if self.valid_from and self.valid_to and self.valid_to <= self.valid_from:
            raise ValueError("valid_to must be later than valid_from")
        return self


class _EntryContent(_ValidityMixin):
    model_config = ConfigDict(extra="forbid")

    category: Text
    title: Text
    similar: list[Text] = Field(default_factory=list, max_length=200)
    answer: LongText
    agent_note: Note = ""
    tags: list[Tag] = Field(default_factory=list, max_length=50)
    audience: Audience = Audience.ALL


class KbRecord(_EntryContent):
    """One line of ``kb.jsonl``: the exchange format of ``kefu kb import`` / ``export``."""

    id: ExternalId
    # Imported knowledge goes live unless the file says otherwise.
    status: EntryStatus = EntryStatus.PUBLISHED


class EntryCreate(_EntryContent):
    external_id: ExternalId
    status: EntryStatus = EntryStatus.DRAFT


class EntryUpdate(_ValidityMixin):
    """A partial edit: only the fields present change."""

    model_config = ConfigDict(extra="forbid")

    category: Text | None = None
    title: Text | None = None
    similar: list[Text] | None = Field(default=None, max_length=200)
    answer: LongText | None = None
    agent_note: Note | None = None
    tags: list[Tag] | None = Field(default=None, max_length=50)
    audience: Audience | None = None


class CustomerEntry(BaseModel):
    """What a customer may see of an entry: never the agent note, tags or internal state."""

    id: str
    category: str
    title: str
    answer: str


class AgentEntry(CustomerEntry):
    agent_note: str
    tags: list[str]
    audience: Audience
    status: EntryStatus
    version: int


class EntryDetail(AgentEntry):
    similar: list[str]
    valid_from: datetime | None
    valid_to: datetime | None
    updated_by: str
    updated_at: datetime


class SearchHitOut(BaseModel):
    entry: CustomerEntry
    confidence: float


class AgentSearchHitOut(BaseModel):
    entry: AgentEntry
    confidence: float
    legs: dict[str, float]


class CustomerSearchResult(BaseModel):
    query: str
    tier: Literal["answer", "suggest", "none"]
    hits: list[SearchHitOut]


class AgentSearchResult(BaseModel):
    query: str
    normalised_query: str
    tier: Literal["answer", "suggest", "none"]
    hits: list[AgentSearchHitOut]
