"""A fake gateway on 127.0.0.1 (a real HTTP server in a thread) and helpers to run actions.

The actions run unmodified through rasa-sdk's ActionExecutor, exactly as the action server runs
them; only the gateway at the other end of the HTTP connection is fake.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from rasa_sdk.executor import ActionExecutor

TOKEN = "test-internal-token"
NOW = "2025-11-22T14:00:00+08:00"


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class FakeGateway:
    url: str
    routes: dict[tuple[str, str], tuple[int, Any]] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    delay_s: float = 0.0

    def reply(self, method: str, path: str, status: int, body: Any) -> None:
        self.routes[(method, path)] = (status, body)

    def calls(self, method: str, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == method and r.path == path]


def _handler(gateway: FakeGateway) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            gateway.requests.append(Recorded(method, self.path, dict(self.headers.items()), body))
            if gateway.delay_s:
                time.sleep(gateway.delay_s)
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                status, answer = 401, {"detail": "bad token"}
            else:
                status, answer = gateway.routes.get((method, self.path), (404, {"detail": "no route"}))
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # The timeout test hangs up on purpose; a broken pipe on the fake's side is expected.
        pass


@pytest.fixture
def gateway(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGateway]:
    fake = FakeGateway(url="")
    server = _QuietServer(("127.0.0.1", 0), _handler(fake))
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("KEFU_GATEWAY_URL", fake.url)
    monkeypatch.setenv("KEFU_INTERNAL_TOKEN", TOKEN)
    monkeypatch.setenv("KEFU_GATEWAY_TIMEOUT", "2")
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def dead_gateway(monkeypatch: pytest.MonkeyPatch) -> None:
    """A gateway URL where nothing listens: the port of a server that was just closed."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    port = server.server_address[1]
    server.server_close()
    monkeypatch.setenv("KEFU_GATEWAY_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("KEFU_INTERNAL_TOKEN", TOKEN)


@pytest.fixture(scope="session")
def executor() -> ActionExecutor:
    runner = ActionExecutor()
    runner.register_package("actions")
    return runner


def tracker(
    *,
    text: str = "",
    intent: str = "",
    slots: dict[str, Any] | None = None,
    now: str | None = NOW,
    sender: str = "conv-1",
    active_loop: str | None = None,
) -> dict[str, Any]:
    """A tracker as Rasa sends it to the action server."""
    metadata: dict[str, Any] = {"channel": "rest", "kb": {"tier": "none", "hits": []}}
    if now:
        metadata["now"] = now
    return {
        "sender_id": sender,
        "slots": {"failure_count": 0.0, "offered_human": False, **(slots or {})},
        "latest_message": {
            "text": text,
            "intent": {"name": intent, "confidence": 0.9},
            "entities": [],
            "metadata": metadata,
        },
        "events": [],
        "paused": False,
        "followup_action": None,
        "active_loop": {"name": active_loop} if active_loop else {},
        "latest_action_name": "action_listen",
    }


@dataclass
class Result:
    events: list[dict[str, Any]]
    responses: list[dict[str, Any]]

    @property
    def customs(self) -> list[dict[str, Any]]:
        return [r["custom"] for r in self.responses if r.get("custom")]

    @property
    def kinds(self) -> list[str]:
        return [c["kind"] for c in self.customs]

    @property
    def only(self) -> dict[str, Any]:
        assert len(self.customs) == 1, self.responses
        return self.customs[0]

    def slots(self) -> dict[str, Any]:
        return {e["name"]: e["value"] for e in self.events if e.get("event") == "slot"}

    def followup(self) -> str | None:
        return next((e["name"] for e in self.events if e.get("event") == "followup"), None)


async def run(executor: ActionExecutor, action: str, state: dict[str, Any]) -> Result:
    answer = await executor.run(
        {"next_action": action, "sender_id": state["sender_id"], "tracker": state, "domain": {}}
    )
    assert answer is not None
    result = Result(events=answer["events"], responses=answer["responses"])
    for custom in result.customs:
        # The contract: every action reply carries a kind and a text the gateway can show.
        assert custom["kind"] and isinstance(custom["text"], str) and custom["text"]
    return result
