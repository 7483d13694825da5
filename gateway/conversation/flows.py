"""Conversation status changes: one function, one arm per legal transition."""

from datetime import datetime

from sqlalchemy.orm import Session

from common.db import utcnow
from gateway.conversation import service
from gateway.conversation.models import Conversation, HandoffReason, Priority, Status, Tier


class IllegalTransition(Exception):
    """A status change the conversation lifecycle does not allow."""


def transition(
    conversation: Conversation,
    new: Status,
    *,
    now: datetime | None = None,
    reason: HandoffReason | None = None,
    priority: Priority | None = None,
    agent_id: int | None = None,
) -> None:
    """Move a conversation to ``new`` status, keeping tier and timestamps consistent."""
    now = now or utcnow()
    previous = Status(conversation.status)
    match (previous, new):
        case (Status.BOT, Status.PENDING_HUMAN):
            conversation.tier = Tier.HUMAN_TEXT.value
            conversation.waiting_since = now
            conversation.handoff_reason = (reason or HandoffReason.CUSTOMER_REQUEST).value
            conversation.priority = (priority or Priority.NORMAL).value
        case (Status.PENDING_HUMAN, Status.HUMAN):
            if agent_id is None:
                raise IllegalTransition("a human takes over only with an agent")
            conversation.assignee_id = agent_id
        case (Status.HUMAN, Status.HUMAN):
            # A transfer between agents: the conversation stays with a human, only the assignee changes.
            if agent_id is None or agent_id == conversation.assignee_id:
                raise IllegalTransition("a transfer needs another agent")
            conversation.assignee_id = agent_id
        case (Status.HUMAN, Status.RESOLVED):
            conversation.resolved_at = now
        case (Status.BOT, Status.RESOLVED):
            # Self-service: the bot resolved it without a human.
            conversation.resolved_at = now
        case (Status.BOT, Status.CALLBACK_REQUESTED) | (Status.PENDING_HUMAN, Status.CALLBACK_REQUESTED):
            conversation.tier = Tier.HUMAN_VOICE.value
            conversation.waiting_since = conversation.waiting_since or now
            conversation.handoff_reason = (reason or HandoffReason.CUSTOMER_REQUEST).value
            conversation.priority = (priority or Priority(conversation.priority)).value
        case (Status.CALLBACK_REQUESTED, Status.VOICE):
            conversation.assignee_id = agent_id if agent_id is not None else conversation.assignee_id
        case (Status.VOICE, Status.RESOLVED):
            conversation.resolved_at = now
        case _:
            raise IllegalTransition(f"{previous.value} → {new.value} is not a legal transition")
    conversation.status = new.value
    conversation.updated_at = now


def hand_off(
    *,
    db_session: Session,
    conversation: Conversation,
    tier: Tier,
    reason: HandoffReason,
    priority: Priority = Priority.NORMAL,
) -> int:
    """Escalate from the bot to a human tier; returns the place in the human queue (0 = next)."""
    status = Status(conversation.status)
    if tier is Tier.HUMAN_TEXT:
        if status is Status.BOT:
            transition(conversation, Status.PENDING_HUMAN, reason=reason, priority=priority)
        elif status is Status.PENDING_HUMAN and priority is Priority.HIGH:
            conversation.priority = priority.value
    elif status in (Status.BOT, Status.PENDING_HUMAN):
        transition(conversation, Status.CALLBACK_REQUESTED, reason=reason, priority=priority)
    db_session.flush()
    return service.queue_position(db_session=db_session, conversation=conversation)


def claim(*, db_session: Session, conversation: Conversation, agent_id: int) -> None:
    """An agent takes a waiting conversation."""
    transition(conversation, Status.HUMAN, agent_id=agent_id)
    db_session.flush()


def resolve(*, db_session: Session, conversation: Conversation) -> None:
    """Close a conversation; the customer is then asked for their effort score."""
    transition(conversation, Status.RESOLVED)
    db_session.flush()
