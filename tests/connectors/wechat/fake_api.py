"""A stand-in for WeChat's server API on a loopback port: records calls, can answer 45015 or 40001."""

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI, Request


@dataclass
class FakeWechat:
    url: str = ""
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    tokens_issued: int = 0
    # openids outside the 48-hour customer-service window
    outside_window: set[str] = field(default_factory=set)
    # the next N custom sends answer 40001 (token expired)
    expire_next: int = 0

    def sent(self, path: str) -> list[dict[str, Any]]:
        return [body for p, body in self.calls if p == path]

    def wait_for(self, path: str, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.sent(path)) >= count:
                return self.sent(path)
            time.sleep(0.02)
        raise AssertionError(f"expected {count} call(s) to {path}, got {self.sent(path)}")


def _app(state: FakeWechat) -> FastAPI:
    app = FastAPI()

    @app.get("/cgi-bin/token")
    def token(grant_type: str, appid: str, secret: str) -> dict[str, Any]:
        state.tokens_issued += 1
        state.calls.append(("/cgi-bin/token", {"appid": appid, "secret": secret}))
        return {"access_token": f"TOKEN-{state.tokens_issued}", "expires_in": 7200}

    @app.post("/cgi-bin/message/custom/send")
    async def custom(request: Request, access_token: str) -> dict[str, Any]:
        body = await request.json()
        state.calls.append(("/cgi-bin/message/custom/send", {**body, "_token": access_token}))
        if state.expire_next:
            state.expire_next -= 1
            return {"errcode": 40001, "errmsg": "invalid credential"}
        if body["touser"] in state.outside_window:
            return {"errcode": 45015, "errmsg": "response out of time limit"}
        return {"errcode": 0, "errmsg": "ok"}

    @app.post("/cgi-bin/message/template/send")
    async def template(request: Request, access_token: str) -> dict[str, Any]:
        body = await request.json()
        state.calls.append(("/cgi-bin/message/template/send", {**body, "_token": access_token}))
        return {"errcode": 0, "errmsg": "ok", "msgid": 1}

    return app


@contextmanager
def serve() -> Iterator[FakeWechat]:
    state = FakeWechat()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(_app(state), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "fake WeChat API did not start"
        time.sleep(0.02)
    state.url = f"http://127.0.0.1:{port}"
    try:
        yield state
    finally:
        server.should_exit = True
        thread.join(10)
