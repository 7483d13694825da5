"""Knowledge base operations used by the gateway, the CLI and (over HTTP) the action server."""

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from knowledge.models import Audience, AuditLog, Entry, EntryStatus, EntryVersion, SimilarQuestion
from knowledge.retrieval import HybridIndex, IndexedEntry, SearchOutcome
from knowledge.schemas import EntryCreate, EntryUpdate, KbRecord

# Fields a version snapshot holds; restoring writes exactly these back.
SNAPSHOT_FIELDS = (
    "category",
    "title",
    "similar",
    "answer",
    "agent_note",
    "tags",
    "audience",
    "status",
    "valid_from",
    "valid_to",
)
PENDING_KEY = "kb_index_pending"


class KnowledgeError(Exception):
    """A knowledge operation that cannot be carried out as asked."""


class EntryNotFound(KnowledgeError):
    pass


class DuplicateEntry(KnowledgeError):
    pass


def get(*, db_session: Session, entry_id: int) -> Entry | None:
    """The entry with this database id."""
    return db_session.get(Entry, entry_id)


def get_by_external_id(*, db_session: Session, external_id: str) -> Entry | None:
    """The entry with this external id (``KB0101``)."""
    return db_session.scalar(select(Entry).where(Entry.external_id == external_id))


def get_servable(*, db_session: Session, external_id: str, now: datetime) -> Entry | None:
    """The entry if a customer may be shown it now: published, audience `all`, inside its validity window."""
    entry = get_by_external_id(db_session=db_session, external_id=external_id)
    if (
        entry is None
        or entry.status != EntryStatus.PUBLISHED
        or entry.audience != Audience.ALL
        or (entry.valid_from is not None and entry.valid_from > now)
        or (entry.valid_to is not None and entry.valid_to <= now)
    ):
        return None
    return entry


def get_all(
    *,
    db_session: Session,
    category: str | None = None,
    status: EntryStatus | None = None,
    audience: str | None = None,
    text: str | None = None,
) -> list[Entry]:
    """Entries matching every given filter, ordered by external id."""
    stmt = select(Entry).order_by(Entry.external_id)
    if category:
        stmt = stmt.where(Entry.category == category)
    if status:
        stmt = stmt.where(Entry.status == status.value)
    if audience:
        stmt = stmt.where(Entry.audience == audience)
    if text:
        like = f"%{text}%"
        stmt = stmt.where(
            or_(
                Entry.title.ilike(like),
                Entry.answer.ilike(like),
                Entry.external_id.ilike(like),
                Entry.id.in_(select(SimilarQuestion.entry_id).where(SimilarQuestion.text.ilike(like))),
            )
        )
    return list(db_session.scalars(stmt))


def get_versions(*, db_session: Session, entry: Entry) -> list[EntryVersion]:
    """Every stored version of an entry, oldest first."""
    return list(
        db_session.scalars(select(EntryVersion).where(EntryVersion.entry_id == entry.id).order_by(EntryVersion.version))
    )


def get_audit(*, db_session: Session, entry: Entry) -> list[AuditLog]:
    """The audit trail of an entry, oldest first."""
    return list(db_session.scalars(select(AuditLog).where(AuditLog.entry_id == entry.id).order_by(AuditLog.id)))


def create(*, db_session: Session, entry_in: EntryCreate, actor: str) -> Entry:
    """Create an entry at version 1."""
    if get_by_external_id(db_session=db_session, external_id=entry_in.external_id):
        raise DuplicateEntry(f"entry {entry_in.external_id} already exists")
    values = entry_in.model_dump(exclude={"external_id"})
    entry = Entry(external_id=entry_in.external_id, version=1, updated_by=actor)
    _assign(entry, values)
    db_session.add(entry)
    db_session.flush()
    _record(db_session, entry, action="create", actor=actor, changes=_diff({}, snapshot(entry)))
    return entry


def update(*, db_session: Session, entry: Entry, entry_in: EntryUpdate, actor: str) -> Entry:
    """Apply a partial edit; a no-op edit writes no version."""
    return _change(db_session, entry, entry_in.model_dump(exclude_unset=True), action="update", actor=actor)


def publish(*, db_session: Session, entry: Entry, actor: str) -> Entry:
    """Make an entry live for search."""
    return _change(db_session, entry, {"status": EntryStatus.PUBLISHED}, action="publish", actor=actor)


def archive(*, db_session: Session, entry: Entry, actor: str) -> Entry:
    """Take an entry out of search, keeping its history."""
    return _change(db_session, entry, {"status": EntryStatus.ARCHIVED}, action="archive", actor=actor)


def restore(*, db_session: Session, entry: Entry, version: int, actor: str) -> Entry:
    """Bring back the content of an earlier version as a new version."""
    stored = db_session.scalar(
        select(EntryVersion).where(EntryVersion.entry_id == entry.id, EntryVersion.version == version)
    )
    if stored is None:
        raise EntryNotFound(f"entry {entry.external_id} has no version {version}")
    values = {key: stored.snapshot[key] for key in SNAPSHOT_FIELDS}
    for key in ("valid_from", "valid_to"):
        if values[key] is not None:
            values[key] = datetime.fromisoformat(values[key])
    return _change(db_session, entry, values, action="restore", actor=actor, extra={"restored_version": version})


def upsert_record(*, db_session: Session, record: KbRecord, actor: str) -> Literal["created", "updated", "unchanged"]:
    """Insert or update one entry from the exchange format (idempotent)."""
    values = record.model_dump(exclude={"id"})
    entry = get_by_external_id(db_session=db_session, external_id=record.id)
    if entry is None:
        create(db_session=db_session, entry_in=EntryCreate(external_id=record.id, **values), actor=actor)
        return "created"
    before = entry.version
    _change(db_session, entry, values, action="import", actor=actor)
    return "unchanged" if entry.version == before else "updated"


def to_record(entry: Entry) -> dict[str, Any]:
    """An entry in the exchange format of ``kb.jsonl`` (defaults left out, as in the demo file)."""
    record: dict[str, Any] = {
        "id": entry.external_id,
        "category": entry.category,
        "title": entry.title,
        "similar": [s.text for s in entry.similar],
        "answer": entry.answer,
        "agent_note": entry.agent_note,
        "tags": list(entry.tags),
        "audience": entry.audience,
    }
    if entry.status != EntryStatus.PUBLISHED:
        record["status"] = entry.status
    for key in ("valid_from", "valid_to"):
        value = getattr(entry, key)
        if value is not None:
            record[key] = value.isoformat()
    return record


def snapshot(entry: Entry) -> dict[str, Any]:
    """The versioned content of an entry as plain JSON values."""
    data: dict[str, Any] = {
        "category": entry.category,
        "title": entry.title,
        "similar": [s.text for s in entry.similar],
        "answer": entry.answer,
        "agent_note": entry.agent_note,
        "tags": list(entry.tags),
        "audience": str(entry.audience),
        "status": str(entry.status),
        "valid_from": entry.valid_from.isoformat() if entry.valid_from else None,
        "valid_to": entry.valid_to.isoformat() if entry.valid_to else None,
    }
    return data


def to_indexed(entry: Entry) -> IndexedEntry:
    """The retrieval engine's view of an entry."""
    return IndexedEntry(
        id=entry.id,
        external_id=entry.external_id,
        category=entry.category,
        title=entry.title,
        similar=tuple(s.text for s in entry.similar),
        answer=entry.answer,
        tags=tuple(entry.tags),
        audience=str(entry.audience),
        valid_from=entry.valid_from,
        valid_to=entry.valid_to,
    )


def searchable(*, db_session: Session) -> list[IndexedEntry]:
    """Every published entry, as the index should hold them."""
    return [to_indexed(e) for e in get_all(db_session=db_session, status=EntryStatus.PUBLISHED)]


def search(
    *,
    index: HybridIndex,
    query: str,
    audience: Literal["customer", "agent"],
    now: datetime | None = None,
    limit: int = 5,
) -> SearchOutcome:
    """Hybrid search with audience and validity enforced inside the engine."""
    return index.search(query, audience=audience, now=now, limit=limit)


def hydrate(*, db_session: Session, entry_ids: Sequence[int]) -> dict[int, Entry]:
    """Load the entries behind search hits in one query."""
    if not entry_ids:
        return {}
    rows = db_session.scalars(select(Entry).where(Entry.id.in_(list(entry_ids))))
    return {row.id: row for row in rows}


def _assign(entry: Entry, values: dict[str, Any]) -> None:
    for key, value in values.items():
        if key == "similar":
            # Rows are replaced wholesale: positions are the paraphrases' identity within an entry.
            entry.similar = [SimilarQuestion(position=i, text=text) for i, text in enumerate(value)]
        elif key in ("audience", "status"):
            setattr(entry, key, str(value.value if hasattr(value, "value") else value))
        elif key == "tags":
            setattr(entry, key, list(value))
        else:
            setattr(entry, key, value)


def _change(
    db_session: Session,
    entry: Entry,
    values: dict[str, Any],
    *,
    action: str,
    actor: str,
    extra: dict[str, Any] | None = None,
) -> Entry:
    before = snapshot(entry)
    probe = {**before}
    for key, value in values.items():
        if key in ("valid_from", "valid_to"):
            probe[key] = value.isoformat() if value is not None else None
        elif key in ("audience", "status"):
            probe[key] = str(value.value if hasattr(value, "value") else value)
        else:
            probe[key] = list(value) if isinstance(value, list | tuple) else value
    changes = _diff(before, probe)
    if not changes:
        return entry
    if entry.similar and "similar" in changes:
        # Delete the old paraphrase rows before inserting new ones at the same positions.
        entry.similar = []
        db_session.flush()
    _assign(entry, {k: v for k, v in values.items() if k in changes})
    entry.version += 1
    entry.updated_by = actor
    db_session.flush()
    _record(db_session, entry, action=action, actor=actor, changes={**changes, **(extra or {})})
    return entry


def _diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    return {key: {"old": before.get(key), "new": after[key]} for key in after if before.get(key) != after[key]}


def _record(db_session: Session, entry: Entry, *, action: str, actor: str, changes: dict[str, Any]) -> None:
    db_session.add(EntryVersion(entry_id=entry.id, version=entry.version, snapshot=snapshot(entry), created_by=actor))
    db_session.add(
        AuditLog(
            entry_id=entry.id,
            external_id=entry.external_id,
            action=action,
            actor=actor,
            version=entry.version,
            changes=changes,
        )
    )
    db_session.flush()
    # Applied to the live index only once the transaction commits (see flows.install_live_sync).
    pending = db_session.info.setdefault(PENDING_KEY, {})
    pending[entry.id] = to_indexed(entry) if entry.status == EntryStatus.PUBLISHED else None
