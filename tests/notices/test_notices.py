"""Proactive notices against a real database (SQLite and PostgreSQL), Rasa absent: the events API, rules,
deduplication, quiet hours, durable delivery into the customer's channel, decisions and the confirm page."""

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from gateway.notices import flows
from gateway.notices.models import DemoPackage, Notice, NoticeStatus
from gateway.notices.schemas import EventIn
from gateway.notices.settings import NoticeSettings
from tests.conftest import demo_gateway
from tests.notices.factories import roaming_event

TOKEN = "internal-token-for-tests-0123456789"
KEY = "events-key-for-tests-0123456789"
EVENTS = {"Authorization": f"Bearer {KEY}"}
INTERNAL = {"Authorization": f"Bearer {TOKEN}"}
SHANGHAI = ZoneInfo("Asia/Shanghai")
NOTICE_SETTINGS = NoticeSettings(api_key=SecretStr(KEY), quiet_hours="", poll_s=0)


@pytest.fixture(scope="module")
def client(factory: sessionmaker[Session], tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    var = tmp_path_factory.mktemp("notices")
    with demo_gateway(factory, var, internal_token=TOKEN, notice_settings=NOTICE_SETTINGS) as client:
        yield client


def sender() -> str:
    return f"web-{uuid.uuid4().hex[:8]}"


def outbox(client: TestClient, who: str) -> list[dict[str, Any]]:
    response = client.get("/api/v1/channels/rest/messages", params={"sender": who, "after": 0})
    assert response.status_code == 200
    return list(response.json())


def test_events_need_the_operator_key(client: TestClient) -> None:
    event = roaming_event(sender())
    assert client.post("/api/v1/events", json=event).status_code == 401
    assert client.post("/api/v1/events", json=event, headers={"Authorization": "Bearer nope"}).status_code == 401


@pytest.mark.parametrize(
    "body",
    [
        {"type": "no.such.event", "customer": {"channel": "rest", "id": "web-1"}},
        {"type": "roaming.returned_home", "customer": {"channel": "rest"}},
        {"type": "roaming.returned_home", "customer": {"channel": "rest", "id": "<script>"}},
        {"customer": {"channel": "rest", "id": "web-1"}},
    ],
)
def test_bad_events_are_refused_clearly_and_store_nothing(
    client: TestClient, factory: sessionmaker[Session], body: dict[str, Any]
) -> None:
    with factory() as s:
        before = s.scalar(select(func.count(Notice.id)))
    response = client.post("/api/v1/events", json=body, headers=EVENTS)
    assert response.status_code == 422 and response.json()["detail"]
    with factory() as s:
        assert s.scalar(select(func.count(Notice.id))) == before


def test_a_roaming_event_reaches_the_customer_once_as_the_kb_answer_with_buttons(
    client: TestClient, factory: sessionmaker[Session]
) -> None:
    who = sender()
    event = roaming_event(who)
    first = client.post("/api/v1/events", json=event, headers=EVENTS)
    again = client.post("/api/v1/events", json=event, headers=EVENTS)

    assert first.status_code == 202 and first.json()["notice_status"] == NoticeStatus.SENT.value
    assert again.json()["replayed"] is True and again.json()["notice_id"] == first.json()["notice_id"]
    [notice] = [m for m in outbox(client, who) if m["kind"] == "notice"]
    assert notice["kb_id"] == "KB0504"
    assert [o["payload"] for o in notice["options"]] == ["/notice_confirm", "/notice_decline"]
    assert notice["url"] and notice["url"].endswith(f"/notices/{_token(factory, first.json()['notice_id'])}")


def test_the_same_notice_is_not_repeated_to_the_same_customer(client: TestClient) -> None:
    who = sender()
    assert client.post("/api/v1/events", json=roaming_event(who), headers=EVENTS).json()["outcome"] == "accepted"
    second = client.post("/api/v1/events", json=roaming_event(who), headers=EVENTS).json()
    assert second["outcome"] == "ignored" and "duplicate" in second["detail"]
    assert len([m for m in outbox(client, who) if m["kind"] == "notice"]) == 1


def test_confirming_closes_the_package_through_billing_once(client: TestClient, factory: sessionmaker[Session]) -> None:
    who = sender()
    with factory() as s:
        s.add(DemoPackage(phone="13900000002", package="港澳日套餐"))
        s.commit()
    event = roaming_event(who, customer={"channel": "rest", "id": who, "phone": "13900000002"})
    assert client.post("/api/v1/events", json=event, headers=EVENTS).status_code == 202
    conversation = client.post("/api/v1/channels/rest/messages", json={"sender": who, "text": "/notice_confirm"}).json()

    assert [r["kind"] for r in conversation["replies"]] == ["notice_confirmed"]
    with factory() as s:
        package = s.scalar(select(DemoPackage).where(DemoPackage.phone == "13900000002"))
        assert package is not None and package.status == "closed"
    # Decided once: the action server's decision call now finds nothing pending.
    decided = client.post(
        f"/api/v1/internal/conversations/{conversation['conversation_id']}/notice-decision",
        json={"decision": "decline"},
        headers=INTERNAL,
    )
    assert decided.status_code == 404


def test_the_action_server_records_a_decline_and_nothing_is_closed(
    client: TestClient, factory: sessionmaker[Session]
) -> None:
    who = sender()
    with factory() as s:
        s.add(DemoPackage(phone="13900000003", package="港澳日套餐"))
        s.commit()
    event = roaming_event(who, customer={"channel": "rest", "id": who, "phone": "13900000003"})
    client.post("/api/v1/events", json=event, headers=EVENTS)
    cid = client.post("/api/v1/channels/rest/messages", json={"sender": who, "text": "你好"}).json()["conversation_id"]

    body = client.post(
        f"/api/v1/internal/conversations/{cid}/notice-decision", json={"decision": "decline"}, headers=INTERNAL
    ).json()

    assert body["status"] == "declined" and body["notice"] == "roaming_daypack_close"
    with factory() as s:
        assert s.scalar(select(DemoPackage.status).where(DemoPackage.phone == "13900000003")) == "active"


def test_the_confirm_page_takes_one_decision(client: TestClient, factory: sessionmaker[Session]) -> None:
    who = sender()
    notice_id = client.post("/api/v1/events", json=roaming_event(who), headers=EVENTS).json()["notice_id"]
    token = _token(factory, notice_id)

    page = client.get(f"/notices/{token}")
    assert page.status_code == 200 and 'data-testid="notice-confirm"' in page.text
    assert client.post(f"/notices/{token}", data={"decision": "decline"}).status_code == 200
    client.post(f"/notices/{token}", data={"decision": "confirm"})
    with factory() as s:
        assert s.get(Notice, notice_id).status == NoticeStatus.DECLINED.value  # type: ignore[union-attr]
    assert client.get(f"/notices/{token}x").status_code == 404
    assert client.post(f"/notices/{token}", data={"decision": "maybe"}).status_code == 422


# The flow tests share the module's connection (SQLite allows one writer); closing the session undoes them.
def test_quiet_hours_hold_a_notice_until_morning_unless_urgent(factory: sessionmaker[Session]) -> None:
    with factory() as db_session:
        _quiet_hours(db_session)


def _quiet_hours(db_session: Session) -> None:
    settings = NoticeSettings(api_key=SecretStr(KEY), quiet_hours="22:00-08:00")
    late = datetime(2026, 11, 22, 23, 30, tzinfo=SHANGHAI).astimezone(UTC)
    calm = flows.accept_event(
        db_session=db_session, event_in=EventIn(**roaming_event(sender())), settings=settings, zone=SHANGHAI, now=late
    )
    urgent = flows.accept_event(
        db_session=db_session,
        event_in=EventIn(**roaming_event(sender(), urgent=True)),
        settings=settings,
        zone=SHANGHAI,
        now=late,
    )
    assert calm.notice is not None and urgent.notice is not None
    assert calm.notice.next_attempt_at.astimezone(SHANGHAI) == datetime(2026, 11, 23, 8, 0, tzinfo=SHANGHAI)
    assert urgent.notice.next_attempt_at == late


def test_a_failed_delivery_is_retried_later_and_sent_once(factory: sessionmaker[Session]) -> None:
    with factory() as db_session:
        _retry(db_session)


def _retry(db_session: Session) -> None:
    settings = NoticeSettings(api_key=SecretStr(KEY), quiet_hours="")
    accepted = flows.accept_event(
        db_session=db_session, event_in=EventIn(**roaming_event(sender())), settings=settings, zone=SHANGHAI
    )
    notice = accepted.notice
    assert notice is not None
    flows.fail(notice=notice, error="channel down", settings=settings)
    assert notice.status == NoticeStatus.SCHEDULED.value and notice.attempts == 1
    assert notice.next_attempt_at > datetime.now(UTC)

    sent = flows.send(db_session=db_session, notice=notice, settings=settings)
    assert notice.status == NoticeStatus.SENT.value and sent.reply.message_id == notice.message_id


def test_unanswered_notices_expire(factory: sessionmaker[Session]) -> None:
    with factory() as db_session:
        _expire(db_session)


def _expire(db_session: Session) -> None:
    settings = NoticeSettings(api_key=SecretStr(KEY), quiet_hours="")
    accepted = flows.accept_event(
        db_session=db_session, event_in=EventIn(**roaming_event(sender())), settings=settings, zone=SHANGHAI
    )
    assert accepted.notice is not None
    flows.send(db_session=db_session, notice=accepted.notice, settings=settings)
    assert flows.expire(db_session=db_session, now=datetime.now(UTC) + timedelta(hours=25)) >= 1
    assert accepted.notice.status == NoticeStatus.EXPIRED.value


def _token(factory: sessionmaker[Session], notice_id: int) -> str:
    with factory() as s:
        notice = s.get(Notice, notice_id)
        assert notice is not None
        return notice.token


def test_a_customer_known_only_by_phone_gets_the_notice_by_sms_with_the_confirm_link(client: TestClient) -> None:
    phone = f"139{uuid.uuid4().int % 10**8:08d}"
    event = {"type": "roaming.returned_home", "customer": {"phone": phone}, "data": {"package": "港澳日套餐"}}

    assert client.post("/api/v1/events", json=event, headers=EVENTS).json()["notice_status"] == "sent"

    [sms] = [m for m in client.app.state.sms.sent() if m["phone"] == phone]  # type: ignore[attr-defined]
    assert "/notices/" in sms["text"] and "港澳" in sms["text"]
    link = sms["text"].rsplit("/notices/", 1)[1]
    assert 'data-testid="notice-confirm"' in client.get(f"/notices/{link}").text


def test_a_batch_of_events_is_stored_in_order_and_a_bad_one_is_refused_alone(
    client: TestClient, factory: sessionmaker[Session]
) -> None:
    first, second = roaming_event(sender()), roaming_event(sender())
    unknown = {**roaming_event(sender()), "type": "no.such.event"}
    assert client.post("/api/v1/events", json=first, headers=EVENTS).status_code == 202

    response = client.post("/api/v1/events/batch", json={"events": [first, unknown, second]}, headers=EVENTS)

    assert response.status_code == 202
    replay, refused, new = response.json()["results"]
    assert replay["replayed"] is True
    assert refused["outcome"] == "rejected" and refused["event_id"] is None and "no.such.event" in refused["detail"]
    assert new["notice_status"] == "sent" and new["key"] == second["key"]
    assert [m["kind"] for m in outbox(client, second["customer"]["id"])] == ["notice"]
    assert outbox(client, unknown["customer"]["id"]) == []
    too_many = client.post("/api/v1/events/batch", json={"events": [first] * 1001}, headers=EVENTS)
    assert too_many.status_code == 422
    assert client.post("/api/v1/events/batch", json={"events": [first]}).status_code == 401
