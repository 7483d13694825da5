"""Value objects exchanged between the retrieval engine and the service layer."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

Audience = Literal["customer", "agent"]
Tier = Literal["answer", "suggest", "none"]


@dataclass(frozen=True)
class IndexedEntry:
    """One knowledge entry as the engine sees it (no agent_note: it is never searched).

    ``valid_from`` / ``valid_to`` must be timezone-aware; the window is half-open
    ``[valid_from, valid_to)`` and only limits what customers are served.
    """

    id: int
    external_id: str
    category: str
    title: str
    similar: tuple[str, ...]
    answer: str
    tags: tuple[str, ...]
    audience: str
    valid_from: datetime | None = None
    valid_to: datetime | None = None

    def __post_init__(self) -> None:
        if self.audience not in ("all", "agent_only"):
            raise ValueError(f"audience must be 'all' or 'agent_only', not {self.audience!r}")
        for name in ("valid_from", "valid_to"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                raise ValueError(f"{name} must be timezone-aware")

    @property
    def agent_only(self) -> bool:
        return self.audience == "agent_only"

    def questions(self) -> tuple[str, ...]:
        """The strings a customer's question is compared with: the title, then every paraphrase."""
        return (self.title, *self.similar)


@dataclass(frozen=True)
class Hit:
    """A ranked entry. ``confidence`` is the calibrated probability that it is the right answer;
    ``legs`` holds the raw per-leg scores (and the fused logit) for the admin test bench."""

    entry_id: int
    external_id: str
    confidence: float
    legs: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class SearchOutcome:
    """``answer``: hits[0] is the answer. ``suggest``: 2..max_suggestions hits to offer as
    "您是不是想问". ``none``: do not answer; ``hits`` still carries the best-ranked
    (low-confidence) entries for the admin test bench and must not be shown to a customer."""

    tier: Tier
    hits: list[Hit]
    normalised_query: str
