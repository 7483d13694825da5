"""The admin API against a real database (SQLite and PostgreSQL): the role is enforced on the API, edits are
versioned and live in search at once, restore, the test bench and knowledge gaps."""

import time
import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from gateway.agent.models import Role
from tests.conftest import demo_gateway
from tests.gateway import factories

A = "/api/v1/admin/knowledge"


@pytest.fixture(scope="module")
def client(factory: sessionmaker[Session], tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with demo_gateway(factory, tmp_path_factory.mktemp("admin")) as client:
        yield client


def bearer(client: TestClient, factory: sessionmaker[Session], role: Role) -> dict[str, str]:
    with factory() as s:
        username = factories.agent(s, role=role).username
        s.commit()
    token = client.post("/api/v1/agent/session", json={"username": username, "password": factories.PASSWORD})
    client.cookies.clear()  # each test chooses its credentials explicitly
    return {"Authorization": f"Bearer {token.json()['token']}"}


def test_only_admins_reach_the_admin_api(client: TestClient, factory: sessionmaker[Session]) -> None:
    client.cookies.clear()
    assert client.get(f"{A}/entries").status_code == 401
    assert client.get(f"{A}/entries", headers=bearer(client, factory, Role.AGENT)).status_code == 403
    assert client.get(f"{A}/entries", headers=bearer(client, factory, Role.ADMIN)).status_code == 200


def test_filters(client: TestClient, factory: sessionmaker[Session]) -> None:
    admin = bearer(client, factory, Role.ADMIN)
    agent_only = client.get(f"{A}/entries", params={"audience": "agent_only"}, headers=admin).json()
    assert agent_only and all(e["audience"] == "agent_only" for e in agent_only)
    found = client.get(f"{A}/entries", params={"q": "港澳日套餐"}, headers=admin).json()
    assert "KB0503" in {e["id"] for e in found}


def test_an_edit_is_versioned_audited_live_and_restorable(client: TestClient, factory: sessionmaker[Session]) -> None:
    admin = bearer(client, factory, Role.ADMIN)
    before = client.get(f"{A}/entries/KB0101", headers=admin).json()
    marker = f"新答案{uuid.uuid4().hex[:6]}"
    edited = client.patch(f"{A}/entries/KB0101", json={"answer": marker}, headers=admin)
    assert edited.status_code == 200 and edited.json()["version"] == before["version"] + 1

    hit = client.get("/api/v1/knowledge/search", params={"q": "怎么查询话费余额？"}).json()["hits"][0]
    assert hit["entry"]["answer"] == marker
    detail = client.get(f"{A}/entries/KB0101", headers=admin).json()
    assert detail["audit"][-1]["action"] == "update" and "answer" in detail["audit"][-1]["changes"]

    restored = client.post(f"{A}/entries/KB0101/restore", json={"version": before["version"]}, headers=admin)
    assert restored.json()["answer"] == before["answer"]
    assert client.post(f"{A}/entries/KB0101/restore", json={"version": 999}, headers=admin).status_code == 404


def test_create_publish_archive(client: TestClient, factory: sessionmaker[Session]) -> None:
    admin = bearer(client, factory, Role.ADMIN)
    kb_id = f"KB9{uuid.uuid4().int % 1000:03d}"
    body = {"external_id": kb_id, "category": "测试", "title": "星际漫游卡怎么激活", "answer": "拨打12345激活。"}
    assert client.post(f"{A}/entries", json=body, headers=admin).status_code == 201
    assert client.post(f"{A}/entries", json=body, headers=admin).status_code == 409
    search = {"q": "星际漫游卡怎么激活"}
    assert all(h["entry"]["id"] != kb_id for h in client.get("/api/v1/knowledge/search", params=search).json()["hits"])
    client.post(f"{A}/entries/{kb_id}/publish", headers=admin)
    assert client.get("/api/v1/knowledge/search", params=search).json()["hits"][0]["entry"]["id"] == kb_id
    client.post(f"{A}/entries/{kb_id}/archive", headers=admin)
    assert all(h["entry"]["id"] != kb_id for h in client.get("/api/v1/knowledge/search", params=search).json()["hits"])


def test_the_test_bench_shows_tiers_and_legs_for_both_audiences(
    client: TestClient, factory: sessionmaker[Session]
) -> None:
    admin = bearer(client, factory, Role.ADMIN)
    [customer, agent] = client.get(f"{A}/test", params={"q": "怎么查询话费余额"}, headers=admin).json()
    assert customer["audience"] == "customer" and agent["audience"] == "agent"
    assert customer["hits"][0]["id"] == "KB0101" and customer["hits"][0]["legs"]
    assert client.get(f"{A}/test", params={"q": " "}, headers=admin).status_code == 422


def test_unanswered_and_unhelpful_questions_become_grouped_gaps(
    client: TestClient, factory: sessionmaker[Session]
) -> None:
    admin = bearer(client, factory, Role.ADMIN)
    for text in ("你们的量子套餐怎么办理", "量子套餐怎么办理啊"):
        client.post("/api/v1/channels/rest/messages", json={"sender": f"web-{uuid.uuid4().hex[:8]}", "text": text})
    gaps = client.get(f"{A}/gaps", headers=admin).json()
    group = next(g for g in gaps["groups"] if "量子套餐" in g["representative"])
    assert group["count"] == 2 and sum(gaps["weeks"].values()) >= 2


def test_a_synonym_edited_by_an_admin_changes_normalisation_after_the_background_rebuild(
    client: TestClient, factory: sessionmaker[Session]
) -> None:
    admin = bearer(client, factory, Role.ADMIN)
    client.cookies.clear()
    assert client.put("/api/v1/admin/synonyms", json={"pairs": []}).status_code == 401
    pairs = client.get("/api/v1/admin/synonyms", headers=admin).json()["pairs"]
    assert client.put("/api/v1/admin/synonyms", json={"pairs": [["星币", "星币"]]}, headers=admin).status_code == 422

    accepted = client.put("/api/v1/admin/synonyms", json={"pairs": [*pairs, ["星币", "话费"]]}, headers=admin)

    assert accepted.status_code == 202 and accepted.json()["rebuilding"] is True
    deadline = time.monotonic() + 300
    while client.get("/api/v1/admin/synonyms", headers=admin).json()["rebuilding"]:
        assert time.monotonic() < deadline, "the index never finished rebuilding"
        time.sleep(0.5)
    [customer, _] = client.get(f"{A}/test", params={"q": "星币余额怎么查"}, headers=admin).json()
    assert "话费" in customer["normalised_query"]
    assert ["星币", "话费"] in client.get("/api/v1/admin/synonyms", headers=admin).json()["pairs"]
