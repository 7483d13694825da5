"""Gateway test data: agents with known passwords."""

import itertools

from sqlalchemy.orm import Session

from gateway.agent import service
from gateway.agent.models import Agent, Role

_seq = itertools.count(1)
PASSWORD = "correct horse battery staple"


def agent(db_session: Session, *, role: Role = Role.AGENT, password: str = PASSWORD) -> Agent:
    n = next(_seq)
    return service.create(
        db_session=db_session, username=f"agent{n}", password=password, display_name=f"坐席{n}", role=role
    )
