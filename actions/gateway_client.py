"""The one HTTP client from the action server to the gateway's internal API.

Standard library only: the production action image installs nothing but rasa-sdk. Calls are
blocking ``urllib`` requests run in a worker thread, so a slow gateway never stalls the event loop,
and every call has a hard timeout: a customer is waiting on the other side of each action.
"""

from __future__ import annotations

import asyncio
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

DEFAULT_GATEWAY_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT_S = 3.0
_PREFIX = "/api/v1/internal"


class GatewayError(Exception):
    """The gateway could not be asked, or refused: ``status`` is None when nothing came back."""

    def __init__(self, message: str, *, status: int | None = None, body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


@dataclass(frozen=True)
class Availability:
    agents_online: int
    service_open: bool
    queue_length: int


class GatewayClient:
    def __init__(self, base_url: str, token: str, *, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        self._base = base_url.rstrip("/")
        self._token = token
        self._timeout = timeout

    @classmethod
    def from_env(cls) -> GatewayClient:
        """Built per call, so a token rotated in the environment is picked up without a restart."""
        token = os.environ.get("KEFU_INTERNAL_TOKEN", "").strip()
        if not token:
            raise GatewayError("KEFU_INTERNAL_TOKEN is not set: the action server cannot call the gateway")
        timeout = float(os.environ.get("KEFU_GATEWAY_TIMEOUT", DEFAULT_TIMEOUT_S))
        return cls(os.environ.get("KEFU_GATEWAY_URL", DEFAULT_GATEWAY_URL), token, timeout=timeout)

    async def availability(self) -> Availability:
        data = await self._call("GET", "/availability")
        return Availability(
            agents_online=int(data.get("agents_online") or 0),
            service_open=bool(data.get("service_open", True)),
            queue_length=int(data.get("queue_length") or 0),
        )

    async def feedback(self, conversation_id: str, *, helpful: bool) -> dict[str, Any]:
        return await self._call("POST", f"/conversations/{_quote(conversation_id)}/feedback", {"helpful": helpful})

    async def callback(self, conversation_id: str, *, phone: str, slot_start: str, slot_end: str) -> dict[str, Any]:
        body = {"phone": phone, "slot_start": slot_start, "slot_end": slot_end}
        return await self._call("POST", f"/conversations/{_quote(conversation_id)}/callbacks", body)

    async def notice_decision(self, conversation_id: str, *, decision: str) -> dict[str, Any]:
        path = f"/conversations/{_quote(conversation_id)}/notice-decision"
        return await self._call("POST", path, {"decision": decision})

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        return await asyncio.to_thread(self._request, method, path, body)

    def _request(self, method: str, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        url = f"{self._base}{_PREFIX}{path}"
        data = json.dumps(body, ensure_ascii=False).encode("utf-8") if body is not None else None
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self._token}")
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json; charset=utf-8")
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            detail = _json_or_text(exc.read())
            raise GatewayError(f"{method} {path}: HTTP {exc.code}", status=exc.code, body=detail) from exc
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise GatewayError(f"{method} {path}: {type(exc).__name__}: {exc}") from exc
        parsed = _json_or_text(raw)
        if not isinstance(parsed, dict):
            raise GatewayError(f"{method} {path}: answer is not a JSON object", body=parsed)
        return parsed


def _quote(conversation_id: str) -> str:
    # The id comes from the channel (Rasa's sender id): never let it change the path.
    return urllib.parse.quote(conversation_id, safe="")


def _json_or_text(raw: bytes) -> Any:
    if not raw:
        return {}
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return raw[:200].decode("utf-8", "replace")
