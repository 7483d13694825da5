"""Knowledge gaps: what customers asked that the bot could not answer, or answered unhelpfully."""

import itertools
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from gateway.conversation.models import Direction, Feedback, Message


@dataclass
class Gap:
    text: str
    reason: str  # unanswered | unsure | unhelpful
    at: datetime
    kb_id: str | None = None


@dataclass
class GapGroup:
    representative: str
    questions: list[Gap] = field(default_factory=list)


def get_gaps(*, db_session: Session, since: datetime) -> list[Gap]:
    """Customer questions since a time that got no answer, only suggestions, or an answer rated 没用."""
    question = aliased(Message)
    unanswered = db_session.execute(
        select(question.text, question.created_at, Message.kind)
        .join(Message, Message.reply_to_id == question.id)
        .where(
            # clarify: no answer at all; suggest: only "did you mean" choices, the KB was not sure.
            Message.kind.in_(("clarify", "suggest")),
            question.direction == Direction.IN.value,
            question.created_at >= since,
        )
    ).all()
    answer = aliased(Message)
    unhelpful = db_session.execute(
        select(question.text, Feedback.created_at, Feedback.kb_entry_id)
        .join(answer, answer.id == Feedback.message_id)
        .join(question, question.id == answer.reply_to_id)
        .where(Feedback.kind == "unhelpful", Feedback.created_at >= since)
    ).all()
    gaps = [
        Gap(text=t, reason="unanswered" if kind == "clarify" else "unsure", at=at)
        for t, at, kind in unanswered
        if t and not t.startswith("/")
    ]
    gaps += [Gap(text=t, reason="unhelpful", at=at, kb_id=kb) for t, at, kb in unhelpful if t and not t.startswith("/")]
    return sorted(gaps, key=lambda g: g.at, reverse=True)


def group(gaps: list[Gap], *, threshold: float = 0.35) -> list[GapGroup]:
    """Group similar questions (character-bigram Jaccard, greedy): one admin action serves the whole group."""
    groups: list[tuple[set[str], GapGroup]] = []
    for gap in gaps:
        grams = _bigrams(gap.text)
        best = max(groups, key=lambda g: _jaccard(grams, g[0]), default=None)
        if best is not None and _jaccard(grams, best[0]) >= threshold:
            best[1].questions.append(gap)
            best[0].update(grams)
        else:
            groups.append((set(grams), GapGroup(representative=gap.text, questions=[gap])))
    return sorted((g for _, g in groups), key=lambda g: len(g.questions), reverse=True)


def weekly_counts(gaps: list[Gap]) -> dict[str, int]:
    """Gaps per ISO week (Monday's date), newest first."""
    counts: dict[str, int] = {}
    for gap in gaps:
        monday = (gap.at - timedelta(days=gap.at.weekday())).date().isoformat()
        counts[monday] = counts.get(monday, 0) + 1
    return dict(sorted(counts.items(), reverse=True))


def _bigrams(text: str) -> set[str]:
    chars = [c for c in text.lower() if c.isalnum()]
    return {a + b for a, b in itertools.pairwise(chars)} or set(chars)


def _jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a and b else 0.0
