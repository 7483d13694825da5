"""Knowledge test data: exchange records and persisted entries with sensible defaults."""

import itertools
from typing import Any

from sqlalchemy.orm import Session

from knowledge import service
from knowledge.models import Entry
from knowledge.schemas import EntryCreate, KbRecord

_seq = itertools.count(1)


def record(**overrides: Any) -> KbRecord:
    """A valid ``kb.jsonl`` record."""
    n = next(_seq)
    data: dict[str, Any] = {
        "id": f"T{n:04d}",
        "category": "测试",
        "title": f"测试问题{n}怎么办？",
        "similar": [f"测试问题{n}的说法一", f"测试问题{n}的说法二"],
        "answer": f"这是测试问题{n}的答案。",
        "agent_note": f"内部备注{n}",
        "tags": ["测试"],
        "audience": "all",
    }
    data.update(overrides)
    return KbRecord.model_validate(data)


def entry(db_session: Session, *, actor: str = "tester", **overrides: Any) -> Entry:
    """A persisted entry (draft unless ``status`` says otherwise)."""
    rec = record(**overrides).model_dump()
    rec["external_id"] = rec.pop("id")
    rec.setdefault("status", "draft")
    if "status" not in overrides:
        rec["status"] = "draft"
    return service.create(db_session=db_session, entry_in=EntryCreate.model_validate(rec), actor=actor)
