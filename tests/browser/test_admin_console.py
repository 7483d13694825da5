"""The admin console in real Chromium: an edited answer reaches the customer's widget on the next question."""

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.browser.test_agent_console import agent_login
from tests.browser.test_widget import MSG, TIMEOUT_MS, open_widget, send
from tests.live import Product

pytest.importorskip("playwright")


def test_an_admin_edits_an_answer_and_the_widget_shows_the_new_wording(
    product: Product, new_context: Callable[..., Any], shot: Callable[[Any, str], Path]
) -> None:
    admin = new_context().new_page()
    admin.goto(product.url + "/admin")
    admin.locator("[data-testid=login-username]").fill(product.admin["username"])
    admin.locator("[data-testid=login-password]").fill(product.admin["password"])
    admin.locator("[data-testid=login-submit]").click()
    admin.locator("[data-testid=entry-filter]").fill("话费余额")
    row = admin.locator("[data-testid=entry-row][data-kb-id=KB0101]")
    row.wait_for(timeout=TIMEOUT_MS)
    shot(admin, "admin-entries")
    row.click()
    wording = f"您可以发送短信CXYE到10088查询余额（新版说明{uuid.uuid4().hex[:4]}）"
    admin.locator("[data-testid=entry-answer]").fill(wording)
    admin.locator("[data-testid=entry-save]").click()
    admin.get_by_text("已保存").wait_for(timeout=TIMEOUT_MS)
    assert admin.locator("[data-testid=version-row]").count() >= 2
    shot(admin, "admin-editor")

    customer = new_context().new_page()
    open_widget(customer, product)
    send(customer, "怎么查询话费余额？")
    answer = customer.locator(f"{MSG}[data-kind=answer]")
    answer.wait_for(timeout=TIMEOUT_MS)
    assert answer.locator("[data-testid=kefu-msg-text]").inner_text() == wording

    admin.locator("#tab-bench").click()
    admin.locator("[data-testid=bench-input]").fill("话费还剩多少")
    admin.locator("[data-testid=bench-run]").click()
    admin.locator("[data-testid=bench-result] table").first.wait_for(timeout=TIMEOUT_MS)
    shot(admin, "admin-bench")
    admin.locator("#tab-gaps").click()
    admin.get_by_role("heading", name="知识缺口", exact=False).wait_for(timeout=TIMEOUT_MS)
    shot(admin, "admin-gaps")


def test_an_agent_cannot_use_the_admin_console_or_its_api(product: Product, context: Any) -> None:
    page = context.new_page()
    agent_login(page, product, product.agent)
    page.goto(product.url + "/admin")
    page.locator("[data-testid=forbidden]").wait_for(timeout=TIMEOUT_MS)
    status = page.evaluate("async () => (await fetch('/api/v1/admin/knowledge/entries')).status")
    assert status == 403
