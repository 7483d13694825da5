"""The thin client of WeChat's server API: access token, customer-service and template messages."""

import asyncio
import json
import logging
import time
from typing import Any

import httpx

log = logging.getLogger(__name__)

TOKEN_EXPIRED = {40001, 40014, 42001}
OUTSIDE_WINDOW = 45015
# Refresh this long before WeChat says the token expires, so no request goes out with a dying token.
REFRESH_MARGIN_S = 300


class WechatApiError(Exception):
    """WeChat answered with a non-zero errcode, or could not be reached."""

    def __init__(self, message: str, errcode: int | None = None):
        super().__init__(message)
        self.errcode = errcode


class TokenCache:
    """The access token, shared through Redis by every gateway process when one is configured."""

    def __init__(self, appid: str, redis_url: str | None = None):
        self._key = f"kefu:wechat:access_token:{appid}"
        self._redis_url = redis_url
        self._redis: Any = None
        self._local: tuple[str, float] | None = None

    def _client(self) -> Any:
        if self._redis is None and self._redis_url:
            import redis.asyncio

            self._redis = redis.asyncio.from_url(self._redis_url, decode_responses=True)
        return self._redis

    async def get(self) -> str | None:
        """A token still valid for more than the refresh margin, or None."""
        now = time.time()
        if self._local and self._local[1] - now > REFRESH_MARGIN_S:
            return self._local[0]
        client = self._client()
        if client is None:
            return None
        raw = await client.get(self._key)
        if raw:
            token, expires = json.loads(raw)
            if expires - now > REFRESH_MARGIN_S:
                self._local = (token, expires)
                return str(token)
        return None

    async def put(self, token: str, expires_in: int) -> None:
        """Remember a fresh token for its lifetime."""
        expires = time.time() + expires_in
        self._local = (token, expires)
        client = self._client()
        if client is not None:
            await client.set(self._key, json.dumps([token, expires]), ex=max(1, expires_in))

    async def drop(self, token: str) -> None:
        """Forget a token WeChat rejected (only if no other process already replaced it)."""
        if self._local and self._local[0] == token:
            self._local = None
        client = self._client()
        if client is not None:
            raw = await client.get(self._key)
            if raw and json.loads(raw)[0] == token:
                await client.delete(self._key)

    async def aclose(self) -> None:
        """Close the Redis connection pool."""
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None


class WechatClient:
    """One official account's API calls, with a timeout and one token refresh on an expired token."""

    def __init__(
        self,
        *,
        appid: str,
        secret: str,
        api_base: str,
        timeout_s: float = 5.0,
        redis_url: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ):
        self._appid = appid
        self._secret = secret
        self._http = httpx.AsyncClient(base_url=api_base.rstrip("/"), timeout=timeout_s, transport=transport)
        self.tokens = TokenCache(appid, redis_url)
        self._refreshing = asyncio.Lock()

    async def access_token(self) -> str:
        """A valid access token, fetched from WeChat only when the cache has none."""
        token = await self.tokens.get()
        if token:
            return token
        async with self._refreshing:
            token = await self.tokens.get()
            if token:
                return token
            body = await self._call(
                "GET",
                "/cgi-bin/token",
                params={"grant_type": "client_credential", "appid": self._appid, "secret": self._secret},
            )
            token = str(body.get("access_token") or "")
            if not token:
                raise WechatApiError("token response without access_token")
            await self.tokens.put(token, int(body.get("expires_in", 7200)))
            return token

    async def send_custom(self, message: dict[str, Any]) -> None:
        """POST /cgi-bin/message/custom/send (customer-service message, 48-hour window)."""
        await self._authed("/cgi-bin/message/custom/send", message)

    async def send_template(self, message: dict[str, Any]) -> None:
        """POST /cgi-bin/message/template/send (template message, no window)."""
        await self._authed("/cgi-bin/message/template/send", message)

    async def aclose(self) -> None:
        """Release connections."""
        await self._http.aclose()
        await self.tokens.aclose()

    async def _authed(self, path: str, payload: dict[str, Any]) -> None:
        for attempt in (1, 2):
            token = await self.access_token()
            try:
                await self._call("POST", path, params={"access_token": token}, json=payload)
                return
            except WechatApiError as exc:
                if exc.errcode in TOKEN_EXPIRED and attempt == 1:
                    log.info("WeChat rejected the access token (%s); refreshing once", exc.errcode)
                    await self.tokens.drop(token)
                    continue
                raise

    async def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            # WeChat's JSON must carry Chinese as UTF-8, not \u escapes (its docs ask for it).
            if "json" in kwargs:
                content = json.dumps(kwargs.pop("json"), ensure_ascii=False).encode()
                kwargs["content"] = content
                kwargs["headers"] = {"Content-Type": "application/json; charset=utf-8"}
            response = await self._http.request(method, path, **kwargs)
            response.raise_for_status()
            body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise WechatApiError(f"{method} {path} failed: {type(exc).__name__}: {exc}") from exc
        errcode = int(body.get("errcode") or 0)
        if errcode:
            raise WechatApiError(f"{path}: errcode {errcode} {body.get('errmsg', '')}", errcode)
        return dict(body)
