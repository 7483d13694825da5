"""`kefu kb import/export` semantics: idempotent upsert, whole-file rejection, exact round trip."""

import io
import json
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from knowledge import flows, service
from knowledge.models import AuditLog, Entry, EntryVersion
from knowledge.settings import KnowledgeSettings

DEMO_KB = KnowledgeSettings().demo_kb_path


def _counts(factory: sessionmaker[Session]) -> tuple[int, int, int]:
    with factory() as s:
        return (
            s.scalar(select(func.count()).select_from(Entry)) or 0,
            s.scalar(select(func.count()).select_from(EntryVersion)) or 0,
            s.scalar(select(func.count()).select_from(AuditLog)) or 0,
        )


def test_demo_kb_imports_idempotently_and_exports_byte_for_byte(session_factory: sessionmaker[Session]) -> None:
    first = flows.import_jsonl(session_factory=session_factory, path=DEMO_KB, actor="demo")
    counts = _counts(session_factory)
    second = flows.import_jsonl(session_factory=session_factory, path=DEMO_KB, actor="demo")

    assert first.as_dict() == {"created": 160, "updated": 0, "unchanged": 0}
    assert second.as_dict() == {"created": 0, "updated": 0, "unchanged": 160}
    assert _counts(session_factory) == counts == (160, 160, 160)
    exported = list(flows.export_jsonl(session_factory=session_factory))
    assert exported == DEMO_KB.read_text(encoding="utf-8").splitlines()


def test_import_updates_changed_entries_with_a_new_version(
    session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    lines = DEMO_KB.read_text(encoding="utf-8").splitlines()[:3]
    flows.import_jsonl(session_factory=session_factory, path=_write(tmp_path, lines), actor="demo")
    changed = json.loads(lines[1])
    changed["answer"] = "新的答案"
    lines[1] = json.dumps(changed, ensure_ascii=False)

    report = flows.import_jsonl(session_factory=session_factory, path=_write(tmp_path, lines), actor="ops")

    assert report.as_dict() == {"created": 0, "updated": 1, "unchanged": 2}
    with session_factory() as s:
        entry = service.get_by_external_id(db_session=s, external_id=changed["id"])
        assert entry is not None
        assert (entry.answer, entry.version, entry.updated_by) == ("新的答案", 2, "ops")


GOOD = json.dumps({"id": "Z0001", "category": "c", "title": "t", "answer": "a"}, ensure_ascii=False)


@pytest.mark.parametrize(
    ("content", "line", "reason"),
    [
        ((GOOD + "\n{not json\n").encode(), 2, "invalid JSON"),
        (
            GOOD.encode() + b"\n" + '{"id": "Z2", "category": "c", "title": "\xe5'.encode("latin-1") + b'"}\n',
            2,
            "invalid UTF-8",
        ),
        ((GOOD + "\n" + GOOD + "\n").encode(), 2, "duplicate id Z0001 (first on line 1)"),
        (b'{"id": "Z3", "category": "c", "title": "t"}\n', 1, "answer: Field required"),
        (b'{"id": "Z4", "category": "c", "title": "t", "answer": "a", "colour": 1}\n', 1, "colour: Extra inputs"),
        (b'{"id": "Z5", "category": "c", "title": "t\\u0007", "answer": "a"}\n', 1, "control characters"),
        (b"[1, 2]\n", 1, "expected a JSON object"),
        (b'{"id": "bad id!", "category": "c", "title": "t", "answer": "a"}\n', 1, "id: String should match"),
    ],
)
def test_a_malformed_file_is_rejected_whole_and_changes_nothing(
    session_factory: sessionmaker[Session], tmp_path: Path, content: bytes, line: int, reason: str
) -> None:
    flows.import_jsonl(session_factory=session_factory, path=_write(tmp_path, [GOOD]), actor="demo")
    before = _counts(session_factory)
    # The good line would change Z0001; it must not be applied when another line is bad.
    path = tmp_path / "bad.jsonl"
    path.write_bytes(content.replace(b'"answer": "a"}', b'"answer": "changed"}', 1))

    with pytest.raises(flows.ImportRejected) as caught:
        flows.import_jsonl(session_factory=session_factory, path=path, actor="demo")

    assert any(e.line == line and reason in e.reason for e in caught.value.errors), caught.value.errors
    assert _counts(session_factory) == before
    with session_factory() as s:
        entry = service.get_by_external_id(db_session=s, external_id="Z0001")
        assert entry is not None and entry.answer == "a"


def test_empty_file_is_rejected() -> None:
    with pytest.raises(flows.ImportRejected, match="no entries"):
        flows.parse_jsonl(io.BytesIO(b"\n\n"))


def _write(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "kb.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
