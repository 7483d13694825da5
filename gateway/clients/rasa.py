"""The Rasa server's HTTP API, as the gateway uses it."""

from typing import Any

import httpx


class RasaUnavailable(Exception):
    """Rasa did not answer in time, or answered with an error."""


class RasaClient:
    def __init__(self, base_url: str, *, timeout: float = 5.0, token: str | None = None):
        params = {"token": token} if token else None
        self._http = httpx.AsyncClient(base_url=base_url.rstrip("/"), timeout=timeout, params=params)

    async def close(self) -> None:
        """Release the connection pool."""
        await self._http.aclose()

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise RasaUnavailable(f"{method} {path}: {type(exc).__name__}") from exc
        if response.status_code >= 400:
            raise RasaUnavailable(f"{method} {path}: HTTP {response.status_code} {response.text[:200]}")
        return response.json() if response.content else None

    async def ready(self) -> bool:
        """Whether a model is loaded and the server answers."""
        try:
            status = await self._call("GET", "/status")
        except RasaUnavailable:
            return False
        return bool(status and status.get("model_id"))

    async def parse(self, text: str) -> dict[str, Any]:
        """NLU only: intent ranking and entities, no effect on any tracker."""
        return dict(await self._call("POST", "/model/parse", json={"text": text}))

    async def tracker(self, sender: str) -> dict[str, Any]:
        """Slots and the active loop of a conversation."""
        return dict(await self._call("GET", f"/conversations/{sender}/tracker", params={"include_events": "NONE"}))

    async def send(self, sender: str, text: str, metadata: dict[str, Any]) -> list[dict[str, Any]]:
        """A customer message through the REST channel; returns the bot's messages."""
        return list(
            await self._call(
                "POST", "/webhooks/rest/webhook", json={"sender": sender, "message": text, "metadata": metadata}
            )
            or []
        )

    async def append_events(self, sender: str, events: list[dict[str, Any]]) -> None:
        """Write turns the gateway answered itself into Rasa's tracker."""
        await self._call("POST", f"/conversations/{sender}/tracker/events", json=events)
