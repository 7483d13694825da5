"""The API client: one token fetch for many sends, one refresh when WeChat says the token expired."""

import asyncio

import pytest

from connectors.wechat.client import WechatApiError, WechatClient
from tests.connectors.wechat.fake_api import FakeWechat, serve


@pytest.fixture(scope="module")
def fake() -> "FakeWechat":
    with serve() as state:
        yield state


def _client(fake: FakeWechat) -> WechatClient:
    return WechatClient(appid="wxapp", secret="s3cret", api_base=fake.url, timeout_s=2)


def test_token_is_fetched_once_and_reused(fake: FakeWechat) -> None:
    async def go() -> None:
        client = _client(fake)
        before = fake.tokens_issued
        await asyncio.gather(*(client.send_custom({"touser": f"o{i}", "msgtype": "text"}) for i in range(5)))
        assert fake.tokens_issued == before + 1
        await client.aclose()

    asyncio.run(go())


def test_expired_token_is_refreshed_once(fake: FakeWechat) -> None:
    async def go() -> None:
        client = _client(fake)
        await client.send_custom({"touser": "warm", "msgtype": "text"})
        issued = fake.tokens_issued
        fake.expire_next = 1
        await client.send_custom({"touser": "oExpired", "msgtype": "text"})
        assert fake.tokens_issued == issued + 1
        tokens = [c["_token"] for c in fake.sent("/cgi-bin/message/custom/send") if c["touser"] == "oExpired"]
        assert len(tokens) == 2 and tokens[0] != tokens[1]
        # Expired twice in a row is an error, not a loop.
        fake.expire_next = 2
        with pytest.raises(WechatApiError) as error:
            await client.send_custom({"touser": "oExpired", "msgtype": "text"})
        assert error.value.errcode == 40001
        await client.aclose()

    asyncio.run(go())


def test_unreachable_api_is_a_client_error() -> None:
    async def go() -> None:
        client = WechatClient(appid="a", secret="s", api_base="http://127.0.0.1:9", timeout_s=1)
        with pytest.raises(WechatApiError):
            await client.send_custom({"touser": "o", "msgtype": "text"})
        await client.aclose()

    asyncio.run(go())
