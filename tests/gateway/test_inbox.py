"""The inbox: a message is durable before its channel acknowledges it, and what a crash left there is answered."""

import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from common.channels import InboundMessage
from common.db import session_scope, utcnow
from gateway.conversation import service
from gateway.conversation.engine import ConversationEngine
from gateway.conversation.models import InboxEntry, Message
from tests.conftest import demo_gateway


@pytest.fixture(scope="module")
def client(factory: sessionmaker[Session], tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with demo_gateway(factory, tmp_path_factory.mktemp("gw")) as client:
        yield client


def _engine(client: TestClient) -> ConversationEngine:
    engine = client.app.state.engine_  # type: ignore[attr-defined]
    assert isinstance(engine, ConversationEngine)
    return engine


def _inbox(factory: sessionmaker[Session], source_id: str) -> int:
    with factory() as s:
        return s.scalar(select(func.count()).select_from(InboxEntry).where(InboxEntry.source_id == source_id)) or 0


def _stored(factory: sessionmaker[Session], source_id: str) -> int:
    with factory() as s:
        return s.scalar(select(func.count()).select_from(Message).where(Message.source_id == source_id)) or 0


def test_the_message_is_in_the_inbox_when_the_channel_may_acknowledge(
    client: TestClient, factory: sessionmaker[Session]
) -> None:
    key = uuid.uuid4().hex
    message = InboundMessage(channel="rest", sender=f"web-{key[:8]}", text="话费余额怎么查", message_id=key)
    seen: list[tuple[int, int]] = []

    def stored() -> None:
        seen.append((_inbox(factory, key), _stored(factory, key)))

    result = client.portal.call(lambda: _engine(client).handle(message, stored=stored))  # type: ignore[union-attr]

    # Acknowledged from the inbox, before contact, conversation and message were written...
    assert seen == [(1, 0)]
    # ...which the turn then did, taking the inbox row away in the same transaction.
    assert result.replies and result.replies[0].kind == "answer"
    assert (_inbox(factory, key), _stored(factory, key)) == (0, 1)


def test_what_a_crash_left_in_the_inbox_is_stored_and_answered(
    client: TestClient, factory: sessionmaker[Session]
) -> None:
    old, fresh = uuid.uuid4().hex, uuid.uuid4().hex
    with session_scope(factory) as s:
        # Acknowledged a minute ago by a process that died before storing it.
        service.add_to_inbox(
            db_session=s,
            messages=[InboundMessage(channel="rest", sender=f"web-{old[:8]}", text="话费余额怎么查", message_id=old)],
            received_at=utcnow() - timedelta(seconds=60),
        )
        # Received just now: a live turn may be storing it this very moment.
        service.add_to_inbox(
            db_session=s,
            messages=[InboundMessage(channel="rest", sender=f"web-{fresh[:8]}", text="你好", message_id=fresh)],
            received_at=utcnow(),
        )

    recovered = client.portal.call(lambda: _engine(client).recover(older_than_s=30))  # type: ignore[union-attr]

    assert [message.message_id for message, _ in recovered] == [old]
    assert recovered[0][1].replies[0].kind == "answer" and not recovered[0][1].replayed
    assert (_inbox(factory, old), _stored(factory, old)) == (0, 1)
    assert (_inbox(factory, fresh), _stored(factory, fresh)) == (1, 0)
    with session_scope(factory) as s:
        service.remove_from_inbox(db_session=s, channel="rest", source_id=fresh)


def test_a_retry_after_the_turn_replays_and_leaves_no_inbox_row(
    client: TestClient, factory: sessionmaker[Session]
) -> None:
    key = uuid.uuid4().hex
    body = {"sender": f"web-{key[:8]}", "text": "宽带密码忘了怎么办", "message_id": key}
    first = client.post("/api/v1/channels/rest/messages", json=body).json()
    again = client.post("/api/v1/channels/rest/messages", json=body).json()

    assert again["replayed"] is True and again["replies"] == first["replies"]
    assert (_inbox(factory, key), _stored(factory, key)) == (0, 1)


def test_the_same_message_twice_in_one_burst_is_one_inbox_row_and_one_turn(
    client: TestClient, factory: sessionmaker[Session]
) -> None:
    key = uuid.uuid4().hex
    message = InboundMessage(channel="rest", sender=f"web-{key[:8]}", text="流量怎么查", message_id=key)

    async def twice() -> list[bool]:
        import asyncio

        engine = _engine(client)
        results = await asyncio.gather(engine.handle(message), engine.handle(message))
        return [result.replayed for result in results]

    assert sorted(client.portal.call(twice)) == [False, True]  # type: ignore[union-attr]
    assert (_inbox(factory, key), _stored(factory, key)) == (0, 1)
