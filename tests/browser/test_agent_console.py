"""The agent console in real Chromium beside the customer's widget: handoff, live chat both ways, resolve, CES."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.browser.test_widget import MSG, TIMEOUT_MS, db_rows, open_widget, send, visitor_of
from tests.live import Product

pytest.importorskip("playwright")


def agent_login(page: Any, product: Product, credentials: dict[str, str]) -> None:
    page.goto(product.url + "/agent")
    page.locator("[data-testid=login-username]").fill(credentials["username"])
    page.locator("[data-testid=login-password]").fill(credentials["password"])
    page.locator("[data-testid=login-submit]").click()
    page.locator("[data-testid=kb-search-input]").wait_for(timeout=TIMEOUT_MS)


def test_an_agent_takes_over_chats_live_and_resolves_then_the_customer_rates_effort(
    product: Product, new_context: Callable[..., Any], shot: Callable[[Any, str], Path]
) -> None:
    agent = new_context().new_page()
    agent_login(agent, product, product.agent)  # logging in from the console puts the agent online
    agent.locator("[data-testid=presence]").select_option("online")

    customer = new_context().new_page()
    open_widget(customer, product)
    send(customer, "我要转人工")
    customer.locator(f"{MSG}[data-kind=handoff]").wait_for(timeout=TIMEOUT_MS)
    [(public_id,)] = db_rows(
        product,
        "SELECT c.public_id FROM conversation c JOIN channel_identity i ON i.contact_id = c.contact_id "
        "AND i.channel = 'webchat' WHERE i.source_id = ? AND c.channel = 'webchat'",
        visitor_of(customer),
    )

    item = agent.locator(f"[data-testid=queue-item][data-conversation-id='{public_id}']")
    item.wait_for(timeout=TIMEOUT_MS)
    shot(agent, "agent-console")
    item.click()
    # The whole transcript, bot turns included, is on screen before the agent says anything.
    agent.locator("[data-testid=agent-msg][data-sender=customer]", has_text="我要转人工").wait_for(timeout=TIMEOUT_MS)
    agent.locator("[data-testid=claim]").click()
    agent.locator("[data-testid=resolve]:not([disabled])").wait_for(timeout=TIMEOUT_MS)  # the console re-rendered
    # The customer hears an agent joined, pushed live (no reload, no reconnect).
    customer.locator(f"{MSG}[data-kind=agent_joined]").wait_for(timeout=TIMEOUT_MS)

    agent.locator("[data-testid=agent-reply-input]").fill("您好，我是人工客服，请问有什么可以帮您？")
    agent.locator("[data-testid=agent-reply-send]").click()
    customer.locator(f"{MSG}[data-sender=agent]", has_text="我是人工客服").wait_for(timeout=TIMEOUT_MS)

    send(customer, "我的流量包为什么没生效")
    agent.locator("[data-testid=agent-msg][data-sender=customer]", has_text="流量包").wait_for(timeout=TIMEOUT_MS)
    # Agent assist suggests entries for the customer's last message, with the agent's view (notes included).
    agent.locator("[data-testid=assist-item]").first.wait_for(timeout=TIMEOUT_MS)
    # Once a human holds the conversation the bot stays silent.
    assert customer.locator(f"{MSG}[data-sender=bot]", has_text="流量包").count() == 0
    shot(agent, "agent-conversation")

    agent.locator("[data-testid=resolve]").click()
    ces = customer.locator("[data-testid=kefu-ces]")
    ces.wait_for(timeout=TIMEOUT_MS)
    ces.locator('button[data-score="7"]').click()
    customer.get_by_text("感谢您的评价").wait_for(timeout=TIMEOUT_MS)
    shot(customer, "widget-ces")
    assert db_rows(
        product,
        "SELECT f.score FROM feedback f JOIN conversation c ON c.id = f.conversation_id "
        "WHERE c.public_id = ? AND f.kind = 'ces'",
        public_id,
    ) == [(7,)]


def test_the_console_refuses_a_wrong_password_and_customers_cannot_use_its_api(product: Product, context: Any) -> None:
    page = context.new_page()
    page.goto(product.url + "/agent")
    page.locator("[data-testid=login-username]").fill(product.agent["username"])
    page.locator("[data-testid=login-password]").fill("wrong password")
    page.locator("[data-testid=login-submit]").click()
    error = page.locator("[data-testid=login-error]")
    error.wait_for(timeout=TIMEOUT_MS)
    page.wait_for_function("() => document.querySelector('[data-testid=login-error]').textContent.length > 0")
    status = page.evaluate("async () => (await fetch('/api/v1/agent/conversations')).status")
    assert status == 401
