"""Agent accounts, password checks with lockout, and bearer sessions."""

import hashlib
import secrets
from datetime import timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from common.db import utcnow
from gateway.agent.models import Agent, AgentSession, Presence, Role

_hasher = PasswordHasher()
MAX_FAILED_LOGINS = 5
LOCKOUT = timedelta(minutes=15)
SESSION_TTL = timedelta(hours=12)


class LoginFailed(Exception):
    """Wrong credentials, or an account locked after repeated failures."""


def hash_password(password: str) -> str:
    """An argon2id hash of a password."""
    return _hasher.hash(password)


def get_all(*, db_session: Session) -> list[Agent]:
    """Every agent account, by name."""
    return list(db_session.scalars(select(Agent).order_by(Agent.display_name)))


def get_by_username(*, db_session: Session, username: str) -> Agent | None:
    """The agent with this login name."""
    return db_session.scalar(select(Agent).where(Agent.username == username))


def create(*, db_session: Session, username: str, password: str, display_name: str, role: Role = Role.AGENT) -> Agent:
    """A new agent account."""
    agent = Agent(username=username, display_name=display_name, role=role.value, password_hash=hash_password(password))
    db_session.add(agent)
    db_session.flush()
    return agent


def authenticate(*, db_session: Session, username: str, password: str) -> Agent:
    """The agent whose password matches; counts failures and locks the account after too many."""
    agent = get_by_username(db_session=db_session, username=username)
    now = utcnow()
    if agent is None:
        # Spend the same time as a real check so usernames cannot be probed by timing.
        _hasher.hash(password)
        raise LoginFailed("wrong username or password")
    if agent.locked_until and agent.locked_until > now:
        raise LoginFailed("account locked after repeated failures; try again later")
    try:
        _hasher.verify(agent.password_hash, password)
    except (VerificationError, InvalidHashError):
        agent.failed_logins += 1
        if agent.failed_logins >= MAX_FAILED_LOGINS:
            agent.locked_until = now + LOCKOUT
            agent.failed_logins = 0
        db_session.flush()
        raise LoginFailed("wrong username or password") from None
    agent.failed_logins = 0
    agent.locked_until = None
    db_session.flush()
    return agent


def open_session(*, db_session: Session, agent: Agent) -> str:
    """A new bearer token for the agent (only its hash is stored)."""
    token = secrets.token_urlsafe(32)
    db_session.add(AgentSession(agent_id=agent.id, token_hash=_digest(token), expires_at=utcnow() + SESSION_TTL))
    db_session.flush()
    return token


def get_by_token(*, db_session: Session, token: str) -> Agent | None:
    """The agent behind an unexpired bearer token."""
    row = db_session.scalar(select(AgentSession).where(AgentSession.token_hash == _digest(token)))
    if row is None or row.expires_at <= utcnow():
        return None
    return db_session.get(Agent, row.agent_id)


def close_session(*, db_session: Session, token: str) -> None:
    """Forget a bearer token."""
    row = db_session.scalar(select(AgentSession).where(AgentSession.token_hash == _digest(token)))
    if row is not None:
        db_session.delete(row)
        db_session.flush()


def set_presence(*, db_session: Session, agent: Agent, presence: Presence) -> None:
    """Online agents take new conversations; away and offline ones do not."""
    agent.presence = presence.value
    db_session.flush()


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
