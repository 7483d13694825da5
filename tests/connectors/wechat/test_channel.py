"""The WeChat endpoint end to end: a real gateway app and database, a fake WeChat API over a socket."""

import asyncio
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from common.channels import InboundMessage, InboundResult, Reply, ReplyOption
from common.db import make_engine, make_session_factory
from common.settings import CommonSettings
from connectors.wechat import crypto, messages
from connectors.wechat.settings import WechatSettings
from gateway import migrate
from gateway.app import create_app
from gateway.conversation.models import InboxEntry, Message
from gateway.settings import GatewaySettings
from knowledge import flows
from knowledge.retrieval import Embedder, UseEmbedder
from knowledge.settings import KnowledgeSettings
from tests.connectors.wechat.fake_api import FakeWechat, serve

V = json.loads((Path(__file__).parent / "vectors.json").read_text(encoding="utf-8"))
TOKEN = V["token"]
URL = "/api/v1/channels/wechat"
ROTATED_KEY = "ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210zyxwvut"


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return UseEmbedder()


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeWechat]:
    with serve() as state:
        yield state


@pytest.fixture
def client(
    session_factory: sessionmaker[Session], tmp_path: Path, embedder: Embedder, fake: FakeWechat
) -> Iterator[TestClient]:
    kb = KnowledgeSettings(index_dir=tmp_path / "index")
    flows.import_jsonl(session_factory=session_factory, path=kb.demo_kb_path, actor="demo")
    app = create_app(
        common=CommonSettings(var_dir=tmp_path),
        kb_settings=kb,
        gateway_settings=GatewaySettings(rasa_url="http://127.0.0.1:9"),
        session_factory=session_factory,
        embedder=embedder,
        wechat_settings=WechatSettings(
            token=TOKEN,
            appid=V["appid"],
            secret="app-secret",
            aes_key=ROTATED_KEY,
            previous_aes_key=V["aes_key"],
            api_base=fake.url,
            template_id="TPL-notice",
        ),
    )
    with TestClient(app) as client:
        assert app.state.index_ready.wait(180), "index never became ready"
        yield client


def _xml(openid: str, msg_type: str, msg_id: str | None = None, **fields: str) -> str:
    body = "".join(f"<{k}>{messages.cdata(v)}</{k}>" for k, v in fields.items())
    ident = f"<MsgId>{msg_id}</MsgId>" if msg_id else ""
    return (
        f"<xml><ToUserName><![CDATA[gh_kefu]]></ToUserName><FromUserName>{messages.cdata(openid)}</FromUserName>"
        f"<CreateTime>{int(time.time())}</CreateTime><MsgType>{messages.cdata(msg_type)}</MsgType>{body}{ident}</xml>"
    )


def _params(timestamp: int | None = None, nonce: str = "n1") -> dict[str, str]:
    ts = str(timestamp if timestamp is not None else int(time.time()))
    return {"timestamp": ts, "nonce": nonce, "signature": crypto.signature(TOKEN, ts, nonce), "openid": "x"}


def post_plain(client: TestClient, xml: str, **params: Any) -> Response:
    return client.post(URL, params={**_params(), **params}, content=xml.encode())


def post_aes(client: TestClient, xml: str, key: str = ROTATED_KEY, appid: str = V["appid"]) -> Response:
    params = _params()
    encrypt = crypto.Envelope(key, appid).encrypt(xml)
    params |= {
        "encrypt_type": "aes",
        "msg_signature": crypto.signature(TOKEN, params["timestamp"], params["nonce"], encrypt),
    }
    return client.post(
        URL, params=params, content=f"<xml><ToUserName>gh</ToUserName><Encrypt>{encrypt}</Encrypt></xml>"
    )


def content_of(response: Response) -> str:
    assert response.status_code == 200, response.text
    return messages.parse(response.content, max_bytes=1 << 20)["Content"]


def inbound_count(session_factory: sessionmaker[Session], **where: Any) -> int:
    with session_factory() as db:
        query = select(func.count()).select_from(Message).where(Message.channel == "wechat", Message.direction == "in")
        for name, value in where.items():
            query = query.where(getattr(Message, name) == value)
        return int(db.scalar(query) or 0)


def test_server_check_echoes_only_for_our_signature(client: TestClient) -> None:
    params = _params() | {"echostr": "5837397520665436492"}
    assert client.get(URL, params=params).text == "5837397520665436492"
    bad = params | {"signature": "0" * 40}
    assert client.get(URL, params=bad).status_code == 403


def test_plaintext_question_gets_a_passive_answer_and_numbered_choices(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    text = content_of(post_plain(client, _xml("oPlain", "text", "1001", Content="怎么查询话费余额？")))
    assert "余额" in text and "回复 1：有用" in text and "回复 2：没用" in text
    # "1" means the first numbered choice: the engine receives its payload, not the digit.
    post_plain(client, _xml("oPlain", "text", "1002", Content="1"))
    with session_factory() as db:
        stored = db.scalar(select(Message.text).where(Message.source_id == "1002"))
    assert stored == "/feedback_positive"
    # Voice is answered from WeChat's recognition text.
    assert "余额" in content_of(post_plain(client, _xml("oVoice", "voice", "1003", Recognition="怎么查询话费余额")))


def test_safe_mode_decrypts_checks_and_encrypts_the_reply(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    response = post_aes(client, _xml("oSafe", "text", "2001", Content="怎么查询话费余额？"))
    assert response.status_code == 200
    outer = messages.parse(response.content, max_bytes=1 << 20)
    assert outer["MsgSignature"] == crypto.signature(TOKEN, outer["TimeStamp"], outer["Nonce"], outer["Encrypt"])
    inner = messages.parse(
        crypto.Envelope(ROTATED_KEY, V["appid"]).decrypt(outer["Encrypt"]).encode(), max_bytes=1 << 20
    )
    assert inner["ToUserName"] == "oSafe" and "余额" in inner["Content"]
    # A message encrypted under the key before the rotation still decrypts.
    assert post_aes(client, _xml("oSafe", "text", "2002", Content="你好"), key=V["aes_key"]).status_code == 200
    # Another account's envelope, or a wrong msg_signature, is refused and nothing is stored.
    assert post_aes(client, _xml("oSafe", "text", "2003", Content="x"), appid="wx0000000000000000").status_code == 403
    params = _params() | {"encrypt_type": "aes", "msg_signature": "0" * 40}
    assert client.post(URL, params=params, content=b"<xml><Encrypt>AAAA</Encrypt></xml>").status_code == 403
    assert inbound_count(session_factory, source_id="2003") == 0
    assert inbound_count(session_factory, source_id="2001") == 1


def test_bad_input_is_refused_or_ignored_and_never_stored(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    good = _xml("oBad", "text", "3001", Content="你好")
    assert post_plain(client, good, signature="f" * 40).status_code == 403
    stale = _params(timestamp=int(time.time()) - 301)
    assert client.post(URL, params=stale, content=good.encode()).status_code == 403
    bomb = (
        '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>'
        "<xml><FromUserName>oBad</FromUserName><MsgType>text</MsgType><Content>&b;</Content></xml>"
    )
    assert post_plain(client, bomb).status_code == 400
    assert post_plain(client, "<xml><Content>oops</xml>").status_code == 400
    assert post_plain(client, "<xml><Content>" + "长" * 30000 + "</Content></xml>").status_code == 413
    assert inbound_count(session_factory, source_id="3001") == 0
    # Types we do not answer are acknowledged, not errors.
    assert post_plain(client, _xml("oBad", "image", "3002", PicUrl="http://x/y.jpg")).text == "success"
    assert post_plain(client, _xml("oBad", "event", Event="LOCATION_CHANGED_BY_MARS")).text == "success"
    assert inbound_count(session_factory) == 0


def test_retry_storm_is_one_turn_with_identical_replies(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    xml = _xml("oStorm", "text", "4001", Content="港澳日套餐怎么订购")
    with ThreadPoolExecutor(3) as pool:
        bodies = list(pool.map(lambda _: post_plain(client, xml).content, range(3)))
    assert bodies[0] == bodies[1] == bodies[2] and b"<Content>" in bodies[0]
    assert inbound_count(session_factory, source_id="4001") == 1
    with session_factory() as db:
        replies = db.scalar(select(func.count()).select_from(Message).where(Message.direction == "out"))
    # A retry after this process forgot the turn is replayed by the engine: same reply, no new turn.
    app: Any = client.app
    app.state.wechat._turns.clear()
    assert (
        messages.parse(post_plain(client, xml).content, max_bytes=1 << 20)["Content"]
        == (messages.parse(bodies[0], max_bytes=1 << 20)["Content"])
    )
    with session_factory() as db:
        assert db.scalar(select(func.count()).select_from(Message).where(Message.direction == "out")) == replies
    assert inbound_count(session_factory, source_id="4001") == 1


def test_retries_reaching_another_process_are_serialised_by_the_engine(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    """Two gateway processes each receive a retry: each starts its own turn, the engine runs one."""
    app: Any = client.app
    message = InboundMessage(channel="wechat", sender="oMulti", text="宽带怎么报装", message_id="4101")

    async def storm() -> list[InboundResult]:
        return list(await asyncio.gather(*(app.state.engine_.handle(message) for _ in range(3))))

    assert client.portal is not None
    results = client.portal.call(storm)
    assert [r.replayed for r in results].count(False) == 1
    assert len({json.dumps([r.model_dump() for r in result.replies]) for result in results}) == 1
    assert inbound_count(session_factory, source_id="4101") == 1


def slow_answers(monkeypatch: pytest.MonkeyPatch, engine: Any, delay: float) -> None:
    """The real engine, answering slower than WeChat's budget (messages are still stored at once)."""
    respond = engine._respond

    async def slow(*args: Any) -> Any:
        await asyncio.sleep(delay)
        return await respond(*args)

    monkeypatch.setattr(engine, "_respond", slow)


def test_slow_turn_acks_success_and_pushes_through_the_customer_service_api(
    client: TestClient, session_factory: sessionmaker[Session], fake: FakeWechat, monkeypatch: pytest.MonkeyPatch
) -> None:
    app: Any = client.app
    app.state.wechat.settings.reply_budget_s = 0.2
    slow_answers(monkeypatch, app.state.engine_, delay=0.6)
    xml = _xml("oSlow", "text", "5001", Content="怎么查询话费余额？")
    assert post_plain(client, xml).text == "success"
    assert post_plain(client, xml).text == "success"  # a retry while the turn runs
    [push] = [c for c in fake.wait_for("/cgi-bin/message/custom/send", 1) if c["touser"] == "oSlow"]
    assert push["msgtype"] == "msgmenu" and "余额" in push["msgmenu"]["head_content"]
    assert [item["content"] for item in push["msgmenu"]["list"]] == ["有用", "没用"]
    time.sleep(0.8)
    assert post_plain(client, xml).text == "success"  # a late retry: still no second reply
    assert len([c for c in fake.sent("/cgi-bin/message/custom/send") if c["touser"] == "oSlow"]) == 1
    assert inbound_count(session_factory, source_id="5001") == 1
    # Tapping a menu item comes back as text with bizmsgmenuid: it maps to the option's payload.
    monkeypatch.undo()
    post_plain(client, _xml("oSlow", "text", "5002", Content="没用", bizmsgmenuid="2"))
    with session_factory() as db:
        assert db.scalar(select(Message.text).where(Message.source_id == "5002")) == "/feedback_negative"


def test_success_is_said_only_once_the_message_is_stored(
    client: TestClient, session_factory: sessionmaker[Session], fake: FakeWechat, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A `success` tells WeChat never to retry: said before the message is durable, a crash would lose it."""
    app: Any = client.app
    app.state.wechat.settings.reply_budget_s = 0.1
    engine = app.state.engine_
    inbox_many = engine._inbox_many
    committed: list[tuple[float, int]] = []

    def slow_inbox(batch: list[InboundMessage]) -> Any:
        time.sleep(0.8)  # a busy database
        result = inbox_many(batch)
        # Checked here, while the turn waits for this write (the fixtures' one connection is not shared yet).
        with session_factory() as s:
            rows = s.scalar(select(func.count()).select_from(InboxEntry).where(InboxEntry.source_id == "5101"))
        committed.append((time.monotonic(), rows or 0))
        return result

    monkeypatch.setattr(engine, "_inbox_many", slow_inbox)
    response = post_plain(client, _xml("oBusyDb", "text", "5101", Content="怎么查询话费余额？"))
    answered = time.monotonic()
    assert response.text == "success"
    # Durable in the inbox (which a restart answers from) before WeChat was told.
    assert len(committed) == 1 and committed[0][1] == 1 and committed[0][0] <= answered
    channel = app.state.wechat
    # The answer goes out through the API; let that turn and its push finish.
    while any(not turn.task.done() for turn in channel._turns.values()) or channel._pushes:
        time.sleep(0.05)
    assert inbound_count(session_factory, source_id="5101") == 1


def test_under_load_pushes_are_acknowledged_once_stored_and_answered_later(
    tmp_path: Path, embedder: Embedder, fake: FakeWechat
) -> None:
    """More turns in flight than `passive_max_in_flight`: `success` at once, every answer through the API.

    Concurrent turns need a real engine with a connection pool (the savepoint fixtures share one connection).
    """
    database_url = f"sqlite:///{tmp_path / 'kefu.db'}"
    migrate.upgrade(database_url)
    engine = make_engine(database_url)
    session_factory = make_session_factory(engine)
    kb = KnowledgeSettings(index_dir=tmp_path / "index")
    flows.import_jsonl(session_factory=session_factory, path=kb.demo_kb_path, actor="demo")
    app = create_app(
        common=CommonSettings(var_dir=tmp_path, database_url=database_url),
        kb_settings=kb,
        gateway_settings=GatewaySettings(rasa_url="http://127.0.0.1:9"),
        embedder=embedder,
        wechat_settings=WechatSettings(
            token=TOKEN, appid=V["appid"], secret="app-secret", api_base=fake.url, passive_max_in_flight=1
        ),
    )
    with TestClient(app) as client:
        assert app.state.index_ready.wait(180), "index never became ready"
        _burst(client, session_factory, fake)
    engine.dispose()


def _burst(client: TestClient, session_factory: sessionmaker[Session], fake: FakeWechat) -> None:
    openids = [f"oBurst{i}" for i in range(8)]
    with ThreadPoolExecutor(len(openids)) as pool:
        texts = list(
            pool.map(lambda o: post_plain(client, _xml(o, "text", f"52{o[-1]}", Content="宽带怎么报装")).text, openids)
        )
    assert texts.count("success") >= len(openids) - 1
    acked = {o for o, t in zip(openids, texts, strict=True) if t == "success"}
    deadline = time.monotonic() + 20
    while not acked <= {c["touser"] for c in fake.sent("/cgi-bin/message/custom/send")}:
        assert time.monotonic() < deadline, "answers acknowledged with `success` were never pushed"
        time.sleep(0.05)
    for o in openids:
        assert inbound_count(session_factory, source_id=f"52{o[-1]}") == 1


def test_handoff_and_agent_replies_reach_wechat_users(
    client: TestClient, session_factory: sessionmaker[Session], fake: FakeWechat
) -> None:
    handed = content_of(post_plain(client, _xml("oHuman", "text", "6001", Content="转人工")))
    assert handed  # the queue position
    # A human holds the conversation: the bot stays silent, the message is stored for the agent.
    assert post_plain(client, _xml("oHuman", "text", "6002", Content="还在吗")).text == "success"
    assert inbound_count(session_factory, source_id="6002") == 1
    app: Any = client.app
    assert client.portal is not None
    client.portal.call(app.state.delivery.deliver, "wechat", "oHuman", [Reply(kind="agent", text="您好，我是客服小王")])
    [sent] = [c for c in fake.wait_for("/cgi-bin/message/custom/send", 1) if c["touser"] == "oHuman"]
    assert sent["msgtype"] == "text" and sent["text"]["content"] == "您好，我是客服小王"


def test_outside_the_48_hour_window_a_notice_goes_out_as_a_template(client: TestClient, fake: FakeWechat) -> None:
    fake.outside_window.add("oAway")
    notice = Reply(
        kind="notice",
        text="您的套餐将于明日变更，请确认。",
        url="https://kefu.example/notices/confirm/abc",
        options=[ReplyOption(title="确认", payload="/confirm_notice"), ReplyOption(title="拒绝", payload="/decline")],
    )
    app: Any = client.app
    assert client.portal is not None
    client.portal.call(app.state.delivery.deliver, "wechat", "oAway", [notice])
    [template] = [c for c in fake.sent("/cgi-bin/message/template/send") if c["touser"] == "oAway"]
    assert template["template_id"] == "TPL-notice" and template["url"] == notice.url
    assert template["data"]["first"]["value"] == notice.text
