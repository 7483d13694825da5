"""The customer's web chat widget in real Chromium against the real product (gateway + Rasa + actions)."""

import re
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.live import Product

pytest.importorskip("playwright")

MSG = "[data-testid=kefu-msg]"
TIMEOUT_MS = 30_000


def open_widget(page: Any, product: Product) -> None:
    page.goto(product.url + "/")
    page.locator("[data-testid=kefu-launcher]").click()
    page.locator("[data-testid=kefu-status][data-state=open]").wait_for(timeout=TIMEOUT_MS)


def send(page: Any, text: str) -> None:
    page.locator("[data-testid=kefu-input]").fill(text)
    page.locator("[data-testid=kefu-input]").press("Enter")


def bot_messages(page: Any) -> Any:
    return page.locator(f"{MSG}:not([data-sender=customer])")


def wait_count(page: Any, selector: str, n: int) -> None:
    page.wait_for_function(
        """([sel, n]) => {
             const host = document.getElementById('kefu-widget');
             return host && host.shadowRoot.querySelectorAll(sel).length >= n;
           }""",
        arg=[selector, n],
        timeout=TIMEOUT_MS,
    )


def db_rows(product: Product, sql: str, *args: object) -> list[tuple[Any, ...]]:
    with sqlite3.connect(product.var / "kefu.db") as db:
        return db.execute(sql, args).fetchall()


def visitor_of(page: Any) -> str:
    token = page.evaluate("() => JSON.parse(localStorage.getItem('kefu-webchat:' + location.origin + ':token'))")
    return str(token).split(".")[1]


def test_a_customer_asks_a_question_and_rates_the_answer(
    product: Product, context: Any, shot: Callable[[Any, str], Path]
) -> None:
    page = context.new_page()
    open_widget(page, product)
    send(page, "怎么查询话费余额？")
    answer = page.locator(f"{MSG}[data-kind=answer]")
    answer.wait_for(timeout=TIMEOUT_MS)
    assert answer.get_attribute("data-sender") == "bot"
    assert answer.get_attribute("data-message-id").isdigit()
    assert "余额" in answer.locator("[data-testid=kefu-msg-text]").inner_text()
    mine = page.locator(f"{MSG}[data-sender=customer]")
    assert mine.locator("[data-testid=kefu-msg-text]").inner_text() == "怎么查询话费余额？"
    shot(page, "widget-answer")

    answer.locator("[data-testid=kefu-helpful]").click()
    page.locator(f"{MSG}[data-kind=feedback_recorded]").wait_for(timeout=TIMEOUT_MS)
    assert mine.nth(1).locator("[data-testid=kefu-msg-text]").inner_text() == "有用"
    assert answer.locator("[data-testid=kefu-unhelpful]").is_disabled()
    visitor = visitor_of(page)
    helpful = db_rows(
        product,
        "SELECT f.kind FROM feedback f JOIN conversation c ON c.id = f.conversation_id "
        "JOIN channel_identity i ON i.contact_id = c.contact_id WHERE i.source_id = ?",
        visitor,
    )
    assert helpful == [("helpful",)]

    # A reload is the same visitor with the same history (the token is signed and kept).
    page.reload()
    page.locator("[data-testid=kefu-launcher]").click()
    page.locator(f"{MSG}[data-kind=feedback_recorded]").wait_for(timeout=TIMEOUT_MS)
    assert visitor_of(page) == visitor
    texts = page.locator(f"{MSG}[data-sender=customer] [data-testid=kefu-msg-text]").all_inner_texts()
    assert texts == ["怎么查询话费余额？", "有用"]


def test_nothing_is_lost_when_the_socket_drops_mid_conversation(
    product: Product, context: Any, shot: Callable[[Any, str], Path]
) -> None:
    page = context.new_page()
    open_widget(page, product)
    send(page, "怎么查询话费余额？")
    wait_count(page, "[data-testid=kefu-msg]:not([data-sender=customer])", 1)

    # Dropped right after sending: the reply goes to a dead socket and must come back after reconnecting.
    send(page, "港澳日套餐怎么订购")
    page.evaluate("() => window.KefuWidget.dropConnection()")
    # Typed while disconnected: kept and sent once the socket is back.
    send(page, "宽带怎么报装")
    page.locator("[data-testid=kefu-status][data-state=open]").wait_for(timeout=TIMEOUT_MS)
    wait_count(page, "[data-testid=kefu-msg]:not([data-sender=customer])", 3)
    page.wait_for_function("() => window.KefuWidget.state().pending === 0", timeout=TIMEOUT_MS)
    shot(page, "widget-reconnect")

    customer = page.locator(f"{MSG}[data-sender=customer] [data-testid=kefu-msg-text]").all_inner_texts()
    assert customer == ["怎么查询话费余额？", "港澳日套餐怎么订购", "宽带怎么报装"]
    ids = [m.get_attribute("data-message-id") for m in bot_messages(page).all()]
    assert len(ids) == len(set(ids)) == 3
    assert page.locator(f"{MSG}[data-state=sending]").count() == 0
    # Each message was stored and answered exactly once.
    visitor = visitor_of(page)
    rows = db_rows(
        product,
        "SELECT m.text FROM message m JOIN conversation c ON c.id = m.conversation_id "
        "JOIN channel_identity i ON i.contact_id = c.contact_id AND i.channel = 'webchat' "
        "WHERE i.source_id = ? AND m.direction = 'in' ORDER BY m.id",
        visitor,
    )
    assert [r[0] for r in rows] == customer
    replies = db_rows(
        product,
        "SELECT COUNT(*) FROM message m JOIN conversation c ON c.id = m.conversation_id "
        "JOIN channel_identity i ON i.contact_id = c.contact_id AND i.channel = 'webchat' "
        "WHERE i.source_id = ? AND m.direction = 'out'",
        visitor,
    )
    assert replies[0][0] == 3


def test_html_and_script_in_messages_are_shown_as_text(product: Product, context: Any) -> None:
    page = context.new_page()
    open_widget(page, product)
    payload = '<img src=x onerror="window.__kefuPwned=1"><script>window.__kefuPwned=2</script><b>粗体</b>'
    send(page, payload)
    wait_count(page, "[data-testid=kefu-msg]:not([data-sender=customer])", 1)
    mine = page.locator(f"{MSG}[data-sender=customer] [data-testid=kefu-msg-text]")
    assert mine.inner_text() == payload
    assert page.locator(f"{MSG} img, {MSG} script, {MSG} b").count() == 0
    assert page.evaluate("() => window.__kefuPwned") is None
    # And after a reload, rendered from the stored history.
    page.reload()
    page.locator("[data-testid=kefu-launcher]").click()
    wait_count(page, "[data-testid=kefu-msg][data-sender=customer]", 1)
    assert page.locator(f"{MSG}[data-sender=customer] [data-testid=kefu-msg-text]").first.inner_text() == payload
    assert page.evaluate("() => window.__kefuPwned") is None


def test_a_customer_can_never_reach_agent_or_admin_apis(product: Product, context: Any) -> None:
    page = context.new_page()
    open_widget(page, product)
    send(page, "你好")
    wait_count(page, "[data-testid=kefu-msg]:not([data-sender=customer])", 1)
    statuses = page.evaluate(
        """async () => {
             const token = JSON.parse(localStorage.getItem('kefu-webchat:' + location.origin + ':token'));
             const out = {};
             for (const path of ['/api/v1/agent/conversations', '/api/v1/admin/entries',
                                 '/api/v1/internal/conversations/x/summary']) {
               for (const [how, headers] of [['bearer', {Authorization: 'Bearer ' + token}],
                                             ['visitor', {'X-Kefu-Visitor': token}], ['none', {}]]) {
                 const r = await fetch(path, {headers});
                 out[path + ' ' + how] = r.status;
               }
             }
             return out;
           }"""
    )
    assert statuses and all(status in (401, 403, 404, 405) for status in statuses.values()), statuses
    assert all(statuses[f"/api/v1/agent/conversations {how}"] == 401 for how in ("bearer", "visitor", "none"))


def test_the_widget_fits_a_phone_screen(
    product: Product, new_context: Callable[..., Any], shot: Callable[[Any, str], Path]
) -> None:
    phone = new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page = phone.new_page()
    open_widget(page, product)
    page.locator("[data-testid=kefu-input]").fill("港澳日套餐怎么订购")
    # A click, not Enter: nothing may cover the send button on a small screen.
    page.locator("[data-testid=kefu-send]").click()
    wait_count(page, "[data-testid=kefu-msg]:not([data-sender=customer])", 1)
    box = page.locator(".kefu-panel").bounding_box()
    assert box is not None and box["width"] == pytest.approx(390, abs=1) and box["height"] > 700
    send_box = page.locator("[data-testid=kefu-send]").bounding_box()
    assert send_box is not None and send_box["x"] + send_box["width"] <= 390
    shot(page, "widget-mobile")


def test_handoff_agent_reply_and_effort_score_reach_the_customer(
    product: Product, context: Any, shot: Callable[[Any, str], Path]
) -> None:
    login = product.http.post("/api/v1/agent/session", json=product.agent)
    headers = {"Authorization": f"Bearer {login.json()['token']}"}
    # With an agent online 转人工 queues for a human (without, it offers a callback).
    assert product.http.put("/api/v1/agent/presence", headers=headers, json={"presence": "online"}).status_code == 200
    page = context.new_page()
    open_widget(page, product)
    send(page, "我要转人工")
    handoff = page.locator(f"{MSG}[data-kind=handoff]")
    handoff.wait_for(timeout=TIMEOUT_MS)
    assert "转接" in handoff.locator("[data-testid=kefu-msg-text]").inner_text()
    [(public_id,)] = db_rows(
        product,
        "SELECT c.public_id FROM conversation c JOIN channel_identity i ON i.contact_id = c.contact_id "
        "AND i.channel = 'webchat' WHERE i.source_id = ? AND c.channel = 'webchat'",
        visitor_of(page),
    )
    base = f"/api/v1/agent/conversations/{public_id}"
    assert product.http.post(f"{base}/claim", headers=headers).status_code == 200
    reply = product.http.post(f"{base}/messages", headers=headers, json={"text": "您好，我是人工客服 <b>小李</b>"})
    assert reply.status_code == 201
    # Whether or not the agent console pushes live, a reconnect replays what the customer missed.
    page.evaluate("() => window.KefuWidget.dropConnection()")
    agent_msg = page.locator(f"{MSG}[data-sender=agent]")
    agent_msg.wait_for(timeout=TIMEOUT_MS)
    assert agent_msg.locator("[data-testid=kefu-msg-text]").inner_text() == "您好，我是人工客服 <b>小李</b>"

    assert product.http.post(f"{base}/resolve", headers=headers).status_code == 200
    page.evaluate("() => window.KefuWidget.dropConnection()")
    ces = page.locator("[data-testid=kefu-ces]")
    ces.wait_for(timeout=TIMEOUT_MS)
    ces.locator('button[data-score="6"]').click()
    page.get_by_text("感谢您的评价").wait_for(timeout=TIMEOUT_MS)
    assert ces.locator('button[data-score="1"]').is_disabled()
    rows = db_rows(
        product,
        "SELECT f.score FROM feedback f JOIN conversation c ON c.id = f.conversation_id "
        "WHERE c.public_id = ? AND f.kind = 'ces'",
        public_id,
    )
    assert rows == [(6,)]


def test_without_agents_online_the_customer_gets_the_callback_form(product: Product, context: Any) -> None:
    login = product.http.post("/api/v1/agent/session", json=product.agent)
    headers = {"Authorization": f"Bearer {login.json()['token']}"}
    presence = "/api/v1/agent/presence"
    assert product.http.put(presence, headers=headers, json={"presence": "offline"}).status_code == 200
    try:
        page = context.new_page()
        open_widget(page, product)
        send(page, "帮我接人工客服")
        form = page.locator("[data-testid=kefu-callback-form]")
        form.wait_for(timeout=TIMEOUT_MS)
        form.locator("input").fill("13800138000")
        form.locator("button").click()
        wait_count(page, "[data-testid=kefu-msg][data-kind=form]", 2)
        texts = page.locator(f"{MSG}[data-sender=customer] [data-testid=kefu-msg-text]").all_inner_texts()
        assert texts == ["帮我接人工客服", "13800138000"]
    finally:
        product.http.put(presence, headers=headers, json={"presence": "online"})


def test_without_websockets_the_widget_falls_back_to_http_and_comes_back(product: Product, context: Any) -> None:
    page = context.new_page()
    # A network that refuses WebSockets (a proxy that strips Upgrade): every socket is closed at once.
    blocked = {"on": True}

    def network(ws: Any) -> None:
        if blocked["on"]:
            ws.close(code=1011)
        else:
            ws.connect_to_server()

    page.route_web_socket(re.compile(r".*/channels/webchat/ws$"), network)
    page.goto(product.url + "/")
    page.locator("[data-testid=kefu-launcher]").click()
    page.locator("[data-testid=kefu-status][data-state=fallback]").wait_for(timeout=TIMEOUT_MS)
    send(page, "怎么查询话费余额？")
    answer = page.locator(f"{MSG}[data-kind=answer]")
    answer.wait_for(timeout=TIMEOUT_MS)
    assert answer.get_attribute("data-message-id").isdigit()
    page.wait_for_function("() => window.KefuWidget.state().pending === 0", timeout=TIMEOUT_MS)

    blocked["on"] = False
    page.locator("[data-testid=kefu-status][data-state=open]").wait_for(timeout=TIMEOUT_MS)
    send(page, "港澳日套餐怎么订购")
    wait_count(page, "[data-testid=kefu-msg][data-kind=answer]", 2)
    ids = [m.get_attribute("data-message-id") for m in bot_messages(page).all()]
    assert len(ids) == len(set(ids)) == 2
