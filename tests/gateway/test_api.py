"""The gateway's HTTP surface for knowledge: customer view only, clear errors, honest health."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from common.settings import CommonSettings
from gateway.app import create_app
from gateway.settings import GatewaySettings
from knowledge import flows
from knowledge.retrieval import Embedder, UseEmbedder
from knowledge.settings import KnowledgeSettings


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return UseEmbedder()


@pytest.fixture
def client(session_factory: sessionmaker[Session], tmp_path: Path, embedder: Embedder) -> Iterator[TestClient]:
    kb = KnowledgeSettings(index_dir=tmp_path / "index")
    flows.import_jsonl(session_factory=session_factory, path=kb.demo_kb_path, actor="demo")
    app = create_app(
        common=CommonSettings(var_dir=tmp_path),
        kb_settings=kb,
        # No Rasa here, even if a developer runs one on the default port.
        gateway_settings=GatewaySettings(rasa_url="http://127.0.0.1:9"),
        session_factory=session_factory,
        embedder=embedder,
    )
    with TestClient(app) as client:
        # Wait on the event, not by polling /health: the test's single connection must not be used by
        # the index builder thread and a request at once.
        assert app.state.index_ready.wait(180), "index never became ready"
        yield client


def test_health_reports_every_component(client: TestClient) -> None:
    response = client.get("/health")
    # No Rasa runs in this test: the gateway serves, degraded, and says why.
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert body["components"]["db"] == "ok" and body["components"]["index"] == "ok"
    assert body["components"]["rasa"] in {"loading", "down"}


def test_customer_search_answers_in_customer_terms_only(client: TestClient) -> None:
    body = client.get("/api/v1/knowledge/search", params={"q": "怎么查询话费余额？"}).json()

    assert body["tier"] == "answer"
    [hit] = body["hits"]
    assert hit["entry"]["id"] == "KB0101"
    assert set(hit["entry"]) == {"id", "category", "title", "answer"}


def test_traditional_chinese_finds_the_same_entry(client: TestClient) -> None:
    simplified = client.get("/api/v1/knowledge/search", params={"q": "港澳日套餐怎么订购"}).json()
    traditional = client.get("/api/v1/knowledge/search", params={"q": "港澳日套餐怎麼訂購"}).json()
    assert simplified["hits"] and traditional["hits"]
    assert traditional["hits"][0]["entry"]["id"] == simplified["hits"][0]["entry"]["id"]


def test_agent_only_entries_and_notes_never_reach_customers(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    from knowledge import service

    with session_factory() as s:
        internal = service.get_all(db_session=s, audience="agent_only")
        notes = [e.agent_note for e in service.get_all(db_session=s) if e.agent_note]
    for entry in internal:
        response = client.get("/api/v1/knowledge/search", params={"q": entry.title})
        text = response.text
        assert entry.external_id not in text
        assert entry.answer not in text
        assert not any(note in text for note in notes)


def test_out_of_scope_question_gets_no_answer(client: TestClient) -> None:
    body = client.get("/api/v1/knowledge/search", params={"q": "今天北京天气怎么样"}).json()
    # At most "did you mean" choices: never a direct answer (Rasa then says what the bot can do).
    assert body["tier"] != "answer"
    assert len(body["hits"]) != 1


@pytest.mark.parametrize("q", ["", "   ", "\x00\x01"])
def test_empty_queries_get_a_clear_error(client: TestClient, q: str) -> None:
    response = client.get("/api/v1/knowledge/search", params={"q": q})
    assert response.status_code == 422
    assert response.json()["detail"]


def test_long_and_oversized_queries(client: TestClient) -> None:
    long_text = "我的话费余额怎么查，" + "唉" * 19_990
    ok = client.post("/api/v1/knowledge/search", json={"q": long_text})
    assert ok.status_code == 200
    assert ok.json()["tier"] in {"answer", "suggest", "none"}

    too_long = client.post("/api/v1/knowledge/search", json={"q": "话" * 20_001})
    assert too_long.status_code == 422

    missing = client.get("/api/v1/knowledge/search")
    assert missing.status_code == 422


def test_search_is_503_while_the_index_loads(session_factory: sessionmaker[Session], tmp_path: Path) -> None:
    app = create_app(
        common=CommonSettings(var_dir=tmp_path),
        session_factory=session_factory,
        kb_settings=KnowledgeSettings(index_dir=tmp_path / "index"),
        gateway_settings=GatewaySettings(rasa_url="http://127.0.0.1:9"),
    )
    with TestClient(app) as client:
        assert app.state.index_ready.wait(60)
        app.state.index_ready.clear()  # as while a large index is still building
        health = client.get("/health").json()
        assert health["status"] == "degraded" and health["components"]["index"] == "loading"
        assert client.get("/api/v1/knowledge/search", params={"q": "话费"}).status_code == 503
