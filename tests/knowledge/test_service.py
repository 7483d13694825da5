"""Versioning, audit and restore of knowledge entries, on SQLite and PostgreSQL."""

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError
from sqlalchemy.orm import Session

from knowledge import service
from knowledge.models import EntryStatus
from knowledge.schemas import EntryCreate, EntryUpdate
from tests.knowledge import factories


def test_create_writes_version_one_and_audit(db_session: Session) -> None:
    entry = factories.entry(db_session, title="怎么查话费？", similar=["查余额", "还剩多少钱"])

    assert entry.version == 1
    assert [s.text for s in entry.similar] == ["查余额", "还剩多少钱"]
    versions = service.get_versions(db_session=db_session, entry=entry)
    assert [(v.version, v.snapshot["title"]) for v in versions] == [(1, "怎么查话费？")]
    [audit] = service.get_audit(db_session=db_session, entry=entry)
    assert (audit.action, audit.actor, audit.version) == ("create", "tester", 1)
    assert audit.changes["title"] == {"old": None, "new": "怎么查话费？"}


def test_update_versions_only_real_changes(db_session: Session) -> None:
    entry = factories.entry(db_session, answer="旧答案")

    service.update(db_session=db_session, entry=entry, entry_in=EntryUpdate(answer="新答案"), actor="alice")
    service.update(db_session=db_session, entry=entry, entry_in=EntryUpdate(answer="新答案"), actor="bob")

    assert entry.version == 2
    assert entry.updated_by == "alice"
    audits = service.get_audit(db_session=db_session, entry=entry)
    assert [a.action for a in audits] == ["create", "update"]
    assert audits[-1].changes == {"answer": {"old": "旧答案", "new": "新答案"}}


def test_paraphrases_are_replaced_in_order(db_session: Session) -> None:
    entry = factories.entry(db_session, similar=["一", "二", "三"])

    service.update(db_session=db_session, entry=entry, entry_in=EntryUpdate(similar=["三", "四"]), actor="a")
    db_session.expire_all()

    reloaded = service.get(db_session=db_session, entry_id=entry.id)
    assert reloaded is not None
    assert [s.text for s in reloaded.similar] == ["三", "四"]


def test_restore_brings_back_an_earlier_version_as_a_new_one(db_session: Session) -> None:
    entry = factories.entry(db_session, title="原标题", similar=["原说法"], answer="原答案")
    service.update(
        db_session=db_session,
        entry=entry,
        entry_in=EntryUpdate(title="改后的标题", similar=["新说法"], answer="改后的答案"),
        actor="a",
    )
    service.publish(db_session=db_session, entry=entry, actor="a")

    service.restore(db_session=db_session, entry=entry, version=1, actor="b")

    assert (entry.title, entry.answer, [s.text for s in entry.similar]) == ("原标题", "原答案", ["原说法"])
    assert entry.status == EntryStatus.DRAFT
    assert entry.version == 4
    audit = service.get_audit(db_session=db_session, entry=entry)[-1]
    assert audit.action == "restore"
    assert audit.changes["restored_version"] == 1


def test_restore_unknown_version_raises(db_session: Session) -> None:
    entry = factories.entry(db_session)
    with pytest.raises(service.EntryNotFound):
        service.restore(db_session=db_session, entry=entry, version=7, actor="a")


def test_publish_and_archive_queue_index_changes_until_commit(db_session: Session) -> None:
    entry = factories.entry(db_session)
    assert db_session.info[service.PENDING_KEY][entry.id] is None  # a draft is not searchable

    service.publish(db_session=db_session, entry=entry, actor="a")
    indexed = db_session.info[service.PENDING_KEY][entry.id]
    assert indexed is not None and indexed.external_id == entry.external_id

    service.archive(db_session=db_session, entry=entry, actor="a")
    assert db_session.info[service.PENDING_KEY][entry.id] is None
    assert [a.action for a in service.get_audit(db_session=db_session, entry=entry)] == [
        "create",
        "publish",
        "archive",
    ]


def test_duplicate_external_id_is_refused(db_session: Session) -> None:
    factories.entry(db_session, id="DUP0001")
    with pytest.raises(service.DuplicateEntry):
        factories.entry(db_session, id="DUP0001")


def test_validity_window_round_trips_as_utc(db_session: Session) -> None:
    start = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    entry = factories.entry(db_session, valid_from=start, valid_to=start + timedelta(days=30))
    db_session.expire_all()

    reloaded = service.get(db_session=db_session, entry_id=entry.id)
    assert reloaded is not None and reloaded.valid_from == start
    assert reloaded.valid_to == start + timedelta(days=30)
    assert service.to_indexed(reloaded).valid_to == start + timedelta(days=30)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("title", "   ", "must not be empty"),
        ("title", "坏\x00标题", "control characters"),
        ("answer", "x" * 20_001, "at most 20000"),
        ("audience", "everyone", "'all' or 'agent_only'"),
        ("valid_from", "2026-01-01T00:00:00", "timezone"),
    ],
)
def test_bad_entry_input_is_refused_with_a_reason(field: str, value: str, message: str) -> None:
    data = {"external_id": "X1", "category": "c", "title": "t", "answer": "a", field: value}
    with pytest.raises(ValidationError, match=message):
        EntryCreate.model_validate(data)


def test_filters_on_listing(db_session: Session) -> None:
    factories.entry(db_session, id="F0001", category="流量", title="流量怎么查")
    factories.entry(db_session, id="F0002", category="话费", title="话费怎么查", audience="agent_only")

    assert [e.external_id for e in service.get_all(db_session=db_session, category="流量")] == ["F0001"]
    assert [e.external_id for e in service.get_all(db_session=db_session, audience="agent_only")] == ["F0002"]
    assert [e.external_id for e in service.get_all(db_session=db_session, text="话费")] == ["F0002"]
    assert service.get_all(db_session=db_session, status=EntryStatus.PUBLISHED) == []
