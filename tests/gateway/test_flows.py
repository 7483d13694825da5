"""The conversation lifecycle: every legal transition, and illegal ones refused."""

import pytest

from gateway.conversation.flows import IllegalTransition, transition
from gateway.conversation.models import Conversation, HandoffReason, Priority, Status, Tier


def conversation(status: Status, assignee: int | None = None) -> Conversation:
    return Conversation(status=status.value, tier=Tier.BOT.value, priority=Priority.NORMAL.value, assignee_id=assignee)


def test_text_escalation_path() -> None:
    c = conversation(Status.BOT)
    transition(c, Status.PENDING_HUMAN, reason=HandoffReason.COMPLAINT, priority=Priority.HIGH)
    assert (c.status, c.tier, c.handoff_reason, c.priority) == ("pending_human", "human_text", "complaint", "high")
    assert c.waiting_since is not None
    transition(c, Status.HUMAN, agent_id=7)
    assert (c.status, c.assignee_id) == ("human", 7)
    transition(c, Status.RESOLVED)
    assert c.status == "resolved" and c.resolved_at is not None


@pytest.mark.parametrize("start", [Status.BOT, Status.PENDING_HUMAN])
def test_voice_escalation_path(start: Status) -> None:
    c = conversation(start)
    transition(c, Status.CALLBACK_REQUESTED, reason=HandoffReason.AFTER_HOURS)
    assert (c.status, c.tier, c.handoff_reason) == ("callback_requested", "human_voice", "after_hours")
    transition(c, Status.VOICE, agent_id=3)
    transition(c, Status.RESOLVED)
    assert c.status == "resolved"


def test_transfer_between_agents() -> None:
    c = conversation(Status.HUMAN, assignee=1)
    transition(c, Status.HUMAN, agent_id=2)
    assert c.assignee_id == 2
    with pytest.raises(IllegalTransition):
        transition(c, Status.HUMAN, agent_id=2)


@pytest.mark.parametrize(
    ("start", "new"),
    [
        (Status.BOT, Status.HUMAN),
        (Status.BOT, Status.VOICE),
        (Status.RESOLVED, Status.BOT),
        (Status.RESOLVED, Status.PENDING_HUMAN),
        (Status.HUMAN, Status.PENDING_HUMAN),
        (Status.VOICE, Status.HUMAN),
        (Status.CALLBACK_REQUESTED, Status.HUMAN),
        (Status.PENDING_HUMAN, Status.BOT),
    ],
)
def test_illegal_transitions_raise(start: Status, new: Status) -> None:
    c = conversation(start)
    with pytest.raises(IllegalTransition):
        transition(c, new, agent_id=1)
    assert c.status == start.value


def test_claim_needs_an_agent() -> None:
    with pytest.raises(IllegalTransition):
        transition(conversation(Status.PENDING_HUMAN), Status.HUMAN)
