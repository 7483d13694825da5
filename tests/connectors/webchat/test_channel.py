"""The web chat channel against a real gateway app and database: sessions, frames, replay, pushes, fallback."""

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from starlette.testclient import WebSocketTestSession
from starlette.websockets import WebSocketDisconnect

from common.channels import Reply
from common.settings import CommonSettings
from gateway import webchat
from gateway.app import create_app
from gateway.conversation import flows as conversation_flows
from gateway.conversation.models import Conversation, Feedback, Message
from gateway.settings import GatewaySettings
from knowledge import flows
from knowledge.retrieval import Embedder, UseEmbedder
from knowledge.settings import KnowledgeSettings

WS = "/api/v1/channels/webchat/ws"
API = "/api/v1/channels/webchat"
QUESTION = "怎么查询话费余额？"


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return UseEmbedder()


@pytest.fixture
def client(session_factory: sessionmaker[Session], tmp_path: Path, embedder: Embedder) -> Iterator[TestClient]:
    kb = KnowledgeSettings(index_dir=tmp_path / "index")
    flows.import_jsonl(session_factory=session_factory, path=kb.demo_kb_path, actor="demo")
    app = create_app(
        common=CommonSettings(var_dir=tmp_path),
        kb_settings=kb,
        gateway_settings=GatewaySettings(rasa_url="http://127.0.0.1:9"),
        session_factory=session_factory,
        embedder=embedder,
    )
    with TestClient(app) as client:
        assert app.state.index_ready.wait(180), "index never became ready"
        yield client


def hello(ws: WebSocketTestSession, token: str | None = None, last_seen_id: int = 0, history: bool = False) -> dict:
    ws.send_json({"type": "hello", "token": token, "last_seen_id": last_seen_id, "history": history})
    return ws.receive_json()


def until(ws: WebSocketTestSession, kind: str) -> tuple[dict, list[dict]]:
    """Frames up to and including the first of `type` kind (skipping typing indicators)."""
    seen = []
    while True:
        frame = ws.receive_json()
        if frame["type"] == "typing":
            continue
        seen.append(frame)
        if frame["type"] == kind:
            return frame, seen


def ask(ws: WebSocketTestSession, text: str, message_id: str | None = None) -> tuple[dict, list[dict]]:
    """Send a message; its ack and the messages that followed it."""
    message_id = message_id or uuid.uuid4().hex
    ws.send_json({"type": "message", "id": message_id, "text": text})
    ack, _ = until(ws, "ack")
    assert ack["id"] == message_id
    # The replies follow the ack; a ping's pong marks the end of them.
    ws.send_json({"type": "ping"})
    _, rest = until(ws, "pong")
    replies = [f["message"] for f in rest if f["type"] == "message"]
    return ack, replies


def count_inbound(session_factory: sessionmaker[Session]) -> int:
    with session_factory() as s:
        inbound = select(func.count()).where(Message.channel == "webchat", Message.direction == "in")
        return s.scalar(inbound) or 0


def test_a_new_visitor_asks_and_gets_a_rateable_answer(client: TestClient) -> None:
    with client.websocket_connect(WS) as ws:
        welcome = hello(ws)
        assert welcome["type"] == "welcome" and welcome["token"].startswith("v1.")
        ack, replies = ask(ws, QUESTION)
    [answer] = replies
    assert answer["kind"] == "answer" and answer["sender"] == "bot" and answer["kb_id"] == "KB0101"
    assert isinstance(answer["message_id"], int)
    assert {o["payload"] for o in answer["options"]} == {"/feedback_positive", "/feedback_negative"}
    assert ack["status"] == "bot" and ack["replayed"] is False


def test_the_same_token_is_the_same_contact_and_sees_its_history(client: TestClient) -> None:
    with client.websocket_connect(WS) as ws:
        token = hello(ws)["token"]
        ask(ws, QUESTION)
    with client.websocket_connect(WS) as ws:
        welcome = hello(ws, token=token, history=True)
        assert welcome["token"] == token
        history = ws.receive_json()
    assert history["type"] == "history"
    assert [(i["sender"], i["kind"]) for i in history["items"]] == [("customer", "text"), ("bot", "answer")]
    assert history["items"][0]["text"] == QUESTION
    rest = client.get(f"{API}/history", headers={"X-Kefu-Visitor": token}).json()
    assert rest == history["items"]


def test_a_resent_message_after_a_drop_is_answered_once_and_missed_replies_replay(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    message_id = uuid.uuid4().hex
    with client.websocket_connect(WS) as ws:
        token = hello(ws)["token"]
        _, first = ask(ws, QUESTION, message_id)
    # The client never saw the reply (dropped before its ack): it reconnects from 0 and resends.
    with client.websocket_connect(WS) as ws:
        hello(ws, token=token, last_seen_id=0)
        replayed = ws.receive_json()
        assert replayed["type"] == "message" and replayed["message"]["message_id"] == first[0]["message_id"]
        ack, again = ask(ws, QUESTION, message_id)
    assert ack["replayed"] is True
    assert [m["message_id"] for m in again] == [first[0]["message_id"]]
    assert count_inbound(session_factory) == 1
    # Reconnecting with the latest id replays nothing.
    with client.websocket_connect(WS) as ws:
        hello(ws, token=token, last_seen_id=first[0]["message_id"])
        ws.send_json({"type": "ping"})
        assert ws.receive_json() == {"type": "pong"}


def test_a_message_id_of_another_visitor_does_not_leak_their_replies(client: TestClient) -> None:
    message_id = uuid.uuid4().hex
    with client.websocket_connect(WS) as ws:
        hello(ws)
        ask(ws, QUESTION, message_id)
    with client.websocket_connect(WS) as ws:
        hello(ws)
        ack, mine = ask(ws, "你好", message_id)
    assert ack["replayed"] is False
    assert mine[0]["kind"] == "greet"


def test_forged_and_malformed_tokens_are_refused(client: TestClient) -> None:
    with client.websocket_connect(WS) as ws:
        genuine = hello(ws)["token"]
    visitor = genuine.split(".")[1]
    forged = f"v1.{visitor}.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
    for token in (forged, "not-a-token", "v1.wv_../../etc.x"):
        with client.websocket_connect(WS) as ws:
            error = hello(ws, token=token)
            assert error["type"] == "error" and error["code"] == "bad_token"
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_json()
            assert closed.value.code == 4401
        assert client.get(f"{API}/history", headers={"X-Kefu-Visitor": token}).status_code == 401
        assert client.post(f"{API}/session", json={"token": token}).status_code == 401
    assert client.get(f"{API}/history").status_code == 401


def test_bad_frames_get_clear_errors_and_the_socket_keeps_working(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    with client.websocket_connect(WS) as ws:
        hello(ws)
        ws.send_text("{not json")
        assert ws.receive_json()["code"] == "bad_json"
        ws.send_text(json.dumps({"type": "message", "id": "x1", "text": "长" * 20_000}))
        assert ws.receive_json()["code"] == "too_large"
        ws.send_json({"type": "launch_missiles"})
        assert ws.receive_json()["code"] == "bad_frame"
        ws.send_json({"type": "message", "id": "bad id!", "text": "hi"})
        assert ws.receive_json()["code"] == "bad_frame"
        ws.send_json({"type": "message", "id": "x2", "text": "长" * 2001})
        error = ws.receive_json()
        assert (error["code"], error["id"]) == ("rejected", "x2")
        ws.send_json({"type": "message", "id": "x3", "text": " \x00 "})
        assert ws.receive_json()["code"] == "rejected"
        ws.send_json({"type": "hello"})
        assert ws.receive_json()["code"] == "bad_frame"
        assert count_inbound(session_factory) == 0
        _, replies = ask(ws, QUESTION)
        assert replies[0]["kind"] == "answer"


def test_the_first_frame_must_be_hello(client: TestClient) -> None:
    with client.websocket_connect(WS) as ws:
        ws.send_json({"type": "message", "id": "a", "text": "hi"})
        assert ws.receive_json()["code"] == "bad_frame"
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
        assert closed.value.code == 4400


def test_html_is_stored_and_returned_as_plain_text(client: TestClient) -> None:
    text = '<img src=x onerror="alert(1)"><script>alert(2)</script>'
    with client.websocket_connect(WS) as ws:
        token = hello(ws)["token"]
        ask(ws, text)
    items = client.get(f"{API}/history", headers={"X-Kefu-Visitor": token}).json()
    assert items[0]["text"] == text


def test_pushes_from_the_core_reach_the_visitors_socket(client: TestClient) -> None:
    app: Any = client.app
    with client.websocket_connect(WS) as ws:
        visitor = hello(ws)["visitor"]
        other = client.post(f"{API}/session", json={}).json()["visitor"]
        client.portal.call(  # type: ignore[union-attr]
            app.state.delivery.deliver, "webchat", other, [Reply(kind="agent", text="不是给你的")]
        )
        pushed = [Reply(kind="agent", text="您好，我是客服小李", message_id=7)]
        client.portal.call(app.state.delivery.deliver, "webchat", visitor, pushed)  # type: ignore[union-attr]
        frame = ws.receive_json()
    assert frame["type"] == "message"
    assert frame["message"]["text"] == "您好，我是客服小李" and frame["message"]["sender"] == "agent"


def test_the_rest_fallback_sends_and_long_polls(client: TestClient, session_factory: sessionmaker[Session]) -> None:
    session = client.post(f"{API}/session", json={}).json()
    headers = {"X-Kefu-Visitor": session["token"]}
    body = {"id": "rest-1", "text": QUESTION}
    first = client.post(f"{API}/messages", json=body, headers=headers).json()
    again = client.post(f"{API}/messages", json=body, headers=headers).json()
    assert first["ack"] == "rest-1" and first["messages"][0]["kind"] == "answer"
    assert again["replayed"] is True and again["messages"] == first["messages"]
    assert count_inbound(session_factory) == 1
    last = first["messages"][-1]["message_id"]
    assert client.get(f"{API}/messages", params={"after": 0}, headers=headers).json() == first["messages"]
    assert client.get(f"{API}/messages", params={"after": last}, headers=headers).json() == []
    assert client.post(f"{API}/messages", json={"id": "r2", "text": "  "}, headers=headers).status_code == 422
    assert client.post(f"{API}/messages", json={"id": "r3", "text": "x" * 2001}, headers=headers).status_code == 422


def test_effort_score_only_after_resolution_and_only_once(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    with client.websocket_connect(WS) as ws:
        token = hello(ws)["token"]
        ask(ws, QUESTION)
        ws.send_json({"type": "ces", "score": 6})
        assert until(ws, "error")[0]["code"] == "not_allowed"
        with session_factory() as s:
            conversation = s.scalars(select(Conversation).where(Conversation.channel == "webchat")).one()
            conversation_flows.resolve(db_session=s, conversation=conversation)
            s.commit()
        ws.send_json({"type": "ces", "score": 8})
        assert until(ws, "error")[0]["code"] == "bad_frame"
        ws.send_json({"type": "ces", "score": 6})
        assert until(ws, "ces_recorded")[0]["score"] == 6
    headers = {"X-Kefu-Visitor": token}
    assert client.post(f"{API}/ces", json={"score": 5}, headers=headers).status_code == 409
    with session_factory() as s:
        assert s.scalars(select(Feedback.score).where(Feedback.kind == "ces")).all() == [6]


def test_a_visitor_token_opens_no_agent_or_admin_api(client: TestClient) -> None:
    token = client.post(f"{API}/session", json={}).json()["token"]
    for headers in ({"Authorization": f"Bearer {token}"}, {"X-Kefu-Visitor": token}):
        assert client.get("/api/v1/agent/conversations", headers=headers).status_code == 401
    client.cookies.set("kefu_session", token)
    try:
        assert client.get("/api/v1/agent/conversations").status_code == 401
    finally:
        client.cookies.clear()


def test_the_widget_files_and_demo_page_are_served(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "星河移动" in page.text
    assert '<script src="/widget/kefu-widget.js" async' in page.text
    script = client.get("/widget/kefu-widget.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert "innerHTML" not in script.text
    assert client.get("/widget/kefu-widget.css").status_code == 200
    assert client.get("/widget/..%2Fchannel.py").status_code == 404


def test_the_visitor_secret_is_generated_once_and_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(webchat.SECRET_ENV, raising=False)
    first = webchat.visitor_secret(tmp_path)
    path = tmp_path / "secrets" / "webchat_visitor_secret"
    assert path.stat().st_mode & 0o777 == 0o600
    assert webchat.visitor_secret(tmp_path).get_secret_value() == first.get_secret_value()
    assert len(first.get_secret_value()) >= 32
    monkeypatch.setenv(webchat.SECRET_ENV, "operator-chosen-secret-0123456789")
    assert webchat.visitor_secret(tmp_path).get_secret_value() == "operator-chosen-secret-0123456789"
