"""A real product for end-to-end and browser tests: the gateway (uvicorn), the Rasa server and the action server.

Session-scoped and shared (tests/conftest.py imports it): Rasa takes about a minute to load, once per run.
"""

import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from pydantic import SecretStr

from common.db import make_engine, make_session_factory, session_scope
from common.settings import CommonSettings
from gateway import migrate, supervisor
from gateway.agent import service as agents
from gateway.agent.models import Role
from gateway.app import create_app
from gateway.settings import GatewaySettings
from knowledge import flows
from knowledge.settings import KnowledgeSettings

TOKEN = "e2e-internal-token-0123456789abcdef"
AGENT = {"username": "e2e-agent", "password": "e2e agent password 42"}
ADMIN = {"username": "e2e-admin", "password": "e2e admin password 42"}
READY_TIMEOUT_S = 300


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Product:
    url: str
    http: httpx.Client
    agent: dict[str, str]
    admin: dict[str, str]
    var: Path
    token: str


@pytest.fixture(scope="session")
def product(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Product]:
    if not supervisor.RASA_BIN.exists() or not supervisor.MODEL.exists():
        message = "Rasa venv or trained model missing (make test installs and trains them)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    var = Path(tmp_path_factory.mktemp("e2e"))
    url = f"sqlite:///{var / 'kefu.db'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    factory = make_session_factory(engine)
    flows.import_jsonl(session_factory=factory, path=KnowledgeSettings().demo_kb_path, actor="demo")
    with session_scope(factory) as db_session:
        agents.create(db_session=db_session, display_name="测试坐席", **AGENT)
        agents.create(db_session=db_session, display_name="测试管理员", role=Role.ADMIN, **ADMIN)
    engine.dispose()

    gateway_port, rasa_port, actions_port = _free_port(), _free_port(), _free_port()
    settings = GatewaySettings(rasa_url=f"http://127.0.0.1:{rasa_port}", internal_token=SecretStr(TOKEN))
    app = create_app(
        common=CommonSettings(var_dir=var, database_url=url),
        kb_settings=KnowledgeSettings(index_dir=var / "index"),
        gateway_settings=settings,
    )
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=gateway_port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    gateway_url = f"http://127.0.0.1:{gateway_port}"
    rasa = supervisor.Rasa(
        var_dir=var, gateway_url=gateway_url, token=TOKEN, rasa_port=rasa_port, actions_port=actions_port
    )
    assert rasa.start()
    http = httpx.Client(base_url=gateway_url, timeout=30)
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            try:
                health = http.get("/health").json()
                if health["status"] == "ok":
                    break
            except httpx.HTTPError:
                health = {}
            if time.monotonic() > deadline:
                logs = "\n".join(
                    (var / "log" / name).read_text(errors="replace")[-3000:]
                    for name in ("rasa.log", "actions.log")
                    if (var / "log" / name).exists()
                )
                pytest.fail(f"product not ready in {READY_TIMEOUT_S}s: {health}\n{logs}")
            time.sleep(1)
        yield Product(url=gateway_url, http=http, agent=AGENT, admin=ADMIN, var=var, token=TOKEN)
    finally:
        http.close()
        rasa.stop()
        server.should_exit = True
        thread.join(timeout=30)
