import pytest
from conftest import TOKEN, FakeGateway

from actions.gateway_client import GatewayClient, GatewayError


async def test_calls_carry_the_bearer_token_and_json(gateway: FakeGateway) -> None:
    gateway.reply("GET", "/api/v1/internal/availability", 200, {"agents_online": 2, "service_open": True})
    gateway.reply("POST", "/api/v1/internal/conversations/c1/feedback", 200, {"recorded": True, "kb_id": "KB1"})
    client = GatewayClient.from_env()

    availability = await client.availability()
    answer = await client.feedback("c1", helpful=False)

    assert availability.agents_online == 2 and availability.service_open and availability.queue_length == 0
    assert answer == {"recorded": True, "kb_id": "KB1"}
    post = gateway.calls("POST", "/api/v1/internal/conversations/c1/feedback")[0]
    assert post.body == {"helpful": False}
    assert post.headers["Authorization"] == f"Bearer {TOKEN}"
    assert post.headers["Content-Type"].startswith("application/json")


async def test_an_http_error_keeps_its_status_and_body(gateway: FakeGateway) -> None:
    gateway.reply("POST", "/api/v1/internal/conversations/c1/notice-decision", 404, {"detail": "none"})
    with pytest.raises(GatewayError) as caught:
        await GatewayClient.from_env().notice_decision("c1", decision="confirm")
    assert caught.value.status == 404
    assert caught.value.body == {"detail": "none"}


async def test_the_conversation_id_cannot_change_the_path(gateway: FakeGateway) -> None:
    gateway.reply("POST", "/api/v1/internal/conversations/a%2F..%2Fb/feedback", 200, {"recorded": True})
    await GatewayClient.from_env().feedback("a/../b", helpful=True)
    assert gateway.calls("POST", "/api/v1/internal/conversations/a%2F..%2Fb/feedback")


@pytest.mark.usefixtures("dead_gateway")
async def test_an_unreachable_gateway_is_a_gateway_error_without_status() -> None:
    with pytest.raises(GatewayError) as caught:
        await GatewayClient.from_env().availability()
    assert caught.value.status is None


async def test_a_slow_gateway_times_out(gateway: FakeGateway, monkeypatch: pytest.MonkeyPatch) -> None:
    gateway.reply("GET", "/api/v1/internal/availability", 200, {"agents_online": 1})
    gateway.delay_s = 1.0
    monkeypatch.setenv("KEFU_GATEWAY_TIMEOUT", "0.2")
    with pytest.raises(GatewayError) as caught:
        await GatewayClient.from_env().availability()
    assert caught.value.status is None


def test_a_missing_token_fails_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KEFU_INTERNAL_TOKEN", raising=False)
    with pytest.raises(GatewayError, match="KEFU_INTERNAL_TOKEN"):
        GatewayClient.from_env()
