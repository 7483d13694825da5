"""The admin API (`/api/v1/admin/…`, admin role only, enforced here) and the console page at `/admin`."""

import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field, ValidationError

from common.db import utcnow
from common.web import DbSession
from gateway.admin import service
from gateway.agent.auth import CurrentAdmin
from knowledge import service as kb_service
from knowledge.models import Entry, EntryStatus
from knowledge.retrieval import Normaliser
from knowledge.schemas import EntryCreate, EntryUpdate
from knowledge.settings import EDITED_SYNONYMS
from knowledge.views import get_live_index

router = APIRouter(prefix="/api/v1/admin", tags=["admin"])
pages = APIRouter(include_in_schema=False)
STATIC = Path(__file__).parent / "static"


class EntryOut(BaseModel):
    id: str
    category: str
    title: str
    similar: list[str]
    answer: str
    agent_note: str
    tags: list[str]
    audience: str
    status: str
    version: int
    updated_by: str
    updated_at: datetime


class VersionOut(BaseModel):
    version: int
    created_by: str
    created_at: datetime
    snapshot: dict[str, Any]


class AuditOut(BaseModel):
    action: str
    actor: str
    version: int
    at: datetime
    changes: dict[str, Any]


class EntryDetail(EntryOut):
    versions: list[VersionOut]
    audit: list[AuditOut]


class RestoreIn(BaseModel):
    version: int = Field(ge=1)


class BenchHit(BaseModel):
    id: str
    title: str
    confidence: float
    legs: dict[str, float]


class BenchOut(BaseModel):
    audience: str
    tier: str
    normalised_query: str
    hits: list[BenchHit]


class GapOut(BaseModel):
    text: str
    reason: str
    at: datetime
    kb_id: str | None


class GapGroupOut(BaseModel):
    representative: str
    count: int
    questions: list[GapOut]


class GapsOut(BaseModel):
    weeks: dict[str, int]
    groups: list[GapGroupOut]


def _out(entry: Entry) -> EntryOut:
    return EntryOut(
        id=entry.external_id,
        category=entry.category,
        title=entry.title,
        similar=[s.text for s in entry.similar],
        answer=entry.answer,
        agent_note=entry.agent_note,
        tags=list(entry.tags or []),
        audience=str(entry.audience),
        status=str(entry.status),
        version=entry.version,
        updated_by=entry.updated_by,
        updated_at=entry.updated_at,
    )


def _entry(db_session: DbSession, kb_id: str) -> Entry:
    entry = kb_service.get_by_external_id(db_session=db_session, external_id=kb_id)
    if entry is None:
        raise HTTPException(status_code=404, detail=f"no entry {kb_id}")
    return entry


@router.get("/knowledge/entries", response_model=list[EntryOut])
def list_entries(
    admin: CurrentAdmin,
    db_session: DbSession,
    category: str | None = None,
    audience: Literal["all", "agent_only"] | None = None,
    status: Literal["draft", "published", "archived"] | None = None,
    q: str | None = None,
) -> list[EntryOut]:
    """Entries filtered by category, audience, status and text."""
    rows = kb_service.get_all(
        db_session=db_session,
        category=category,
        audience=audience,
        status=EntryStatus(status) if status else None,
        text=q.strip() if q else None,
    )
    return [_out(e) for e in rows]


@router.get("/knowledge/entries/{kb_id}", response_model=EntryDetail)
def get_entry(kb_id: str, admin: CurrentAdmin, db_session: DbSession) -> EntryDetail:
    """One entry with its version history and audit trail."""
    entry = _entry(db_session, kb_id)
    return EntryDetail(
        **_out(entry).model_dump(),
        versions=[
            VersionOut(version=v.version, created_by=v.created_by, created_at=v.created_at, snapshot=v.snapshot)
            for v in kb_service.get_versions(db_session=db_session, entry=entry)
        ],
        audit=[
            AuditOut(action=a.action, actor=a.actor, version=a.version, at=a.at, changes=a.changes)
            for a in kb_service.get_audit(db_session=db_session, entry=entry)
        ],
    )


@router.post("/knowledge/entries", response_model=EntryOut, status_code=201)
def create_entry(body: EntryCreate, admin: CurrentAdmin, db_session: DbSession) -> EntryOut:
    """A new entry (a draft unless the body says published)."""
    try:
        entry = kb_service.create(db_session=db_session, entry_in=body, actor=f"admin:{admin.username}")
    except kb_service.DuplicateEntry as exc:
        raise HTTPException(status_code=409, detail=str(exc)) from exc
    db_session.commit()
    return _out(entry)


@router.patch("/knowledge/entries/{kb_id}", response_model=EntryOut)
def update_entry(kb_id: str, body: EntryUpdate, admin: CurrentAdmin, db_session: DbSession) -> EntryOut:
    """A partial edit; versioned, audited and live in search when it commits."""
    entry = _entry(db_session, kb_id)
    try:
        kb_service.update(db_session=db_session, entry=entry, entry_in=body, actor=f"admin:{admin.username}")
    except (ValueError, ValidationError) as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from exc
    db_session.commit()
    return _out(entry)


@router.post("/knowledge/entries/{kb_id}/publish", response_model=EntryOut)
def publish_entry(kb_id: str, admin: CurrentAdmin, db_session: DbSession) -> EntryOut:
    """Make the entry live for search."""
    entry = _entry(db_session, kb_id)
    kb_service.publish(db_session=db_session, entry=entry, actor=f"admin:{admin.username}")
    db_session.commit()
    return _out(entry)


@router.post("/knowledge/entries/{kb_id}/archive", response_model=EntryOut)
def archive_entry(kb_id: str, admin: CurrentAdmin, db_session: DbSession) -> EntryOut:
    """Take the entry out of search, keeping its history."""
    entry = _entry(db_session, kb_id)
    kb_service.archive(db_session=db_session, entry=entry, actor=f"admin:{admin.username}")
    db_session.commit()
    return _out(entry)


@router.post("/knowledge/entries/{kb_id}/restore", response_model=EntryOut)
def restore_entry(kb_id: str, body: RestoreIn, admin: CurrentAdmin, db_session: DbSession) -> EntryOut:
    """Bring back an earlier version's content as a new version."""
    entry = _entry(db_session, kb_id)
    try:
        kb_service.restore(db_session=db_session, entry=entry, version=body.version, actor=f"admin:{admin.username}")
    except kb_service.EntryNotFound as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from exc
    db_session.commit()
    return _out(entry)


@router.get("/knowledge/test", response_model=list[BenchOut])
def test_bench(q: str, request: Request, admin: CurrentAdmin, db_session: DbSession) -> list[BenchOut]:
    """What a customer and an agent would get for a question: tier, confidence and every leg's score."""
    if not q.strip() or len(q) > 2000:
        raise HTTPException(status_code=422, detail="the question is empty or too long")
    live = get_live_index(request)
    results = []
    for audience in ("customer", "agent"):
        outcome = kb_service.search(index=live.index, query=q, audience=audience, limit=5)  # type: ignore[arg-type]
        entries = kb_service.hydrate(db_session=db_session, entry_ids=[h.entry_id for h in outcome.hits])
        results.append(
            BenchOut(
                audience=audience,
                tier=outcome.tier,
                normalised_query=outcome.normalised_query,
                hits=[
                    BenchHit(
                        id=h.external_id,
                        title=entries[h.entry_id].title if h.entry_id in entries else "",
                        confidence=round(h.confidence, 4),
                        legs={k: round(float(v), 4) for k, v in h.legs.items()},
                    )
                    for h in outcome.hits
                ],
            )
        )
    return results


@router.get("/knowledge/gaps", response_model=GapsOut)
def gaps(admin: CurrentAdmin, db_session: DbSession, days: int = 28) -> GapsOut:
    """Unanswered and 没用-rated customer questions, grouped by similarity, with counts per week."""
    found = service.get_gaps(db_session=db_session, since=utcnow() - timedelta(days=max(1, min(days, 365))))
    return GapsOut(
        weeks=service.weekly_counts(found),
        groups=[
            GapGroupOut(
                representative=g.representative,
                count=len(g.questions),
                questions=[GapOut(text=q.text, reason=q.reason, at=q.at, kb_id=q.kb_id) for q in g.questions],
            )
            for g in service.group(found)
        ],
    )


class SynonymsIn(BaseModel):
    pairs: list[tuple[str, str]] = Field(max_length=5000)


class SynonymsOut(BaseModel):
    pairs: list[tuple[str, str]]
    rebuilding: bool = False


@router.get("/synonyms", response_model=SynonymsOut)
def get_synonyms(request: Request, admin: CurrentAdmin) -> SynonymsOut:
    """The synonym table in force (variant → canonical)."""
    path = request.app.state.kb_settings.synonyms_in_force(request.app.state.common.var_dir)
    return SynonymsOut(pairs=Normaliser.load_synonyms(path), rebuilding=_rebuilding(request))


@router.put("/synonyms", response_model=SynonymsOut, status_code=202)
def put_synonyms(body: SynonymsIn, request: Request, admin: CurrentAdmin) -> SynonymsOut:
    """Replace the synonym table; the index re-normalises every entry in the background (seconds)."""
    pairs = [(a.strip(), b.strip()) for a, b in body.pairs]
    bad = [p for p in pairs if not p[0] or not p[1] or any(c in "\t\n#" for c in p[0] + p[1]) or p[0] == p[1]]
    if bad:
        raise HTTPException(status_code=422, detail=f"invalid pairs (empty, tab, newline, # or identical): {bad[:5]}")
    live = get_live_index(request)
    path = request.app.state.common.var_dir / EDITED_SYNONYMS
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(
        f"# edited in the admin console by {admin.username}\n" + "".join(f"{a}\t{b}\n" for a, b in pairs),
        encoding="utf-8",
    )
    tmp.replace(path)  # atomic: a crash leaves the old table or the new one, never half of each
    if _rebuilding(request):
        raise HTTPException(status_code=409, detail="the index is still rebuilding for the last edit; retry shortly")
    rebuild = threading.Thread(target=live.index.set_synonyms, args=(pairs,), name="kb-synonyms", daemon=True)
    request.app.state.synonyms_rebuild = rebuild
    rebuild.start()
    return SynonymsOut(pairs=pairs, rebuilding=True)


def _rebuilding(request: Request) -> bool:
    rebuild: threading.Thread | None = getattr(request.app.state, "synonyms_rebuild", None)
    return rebuild is not None and rebuild.is_alive()


@pages.get("/admin")
def admin_page() -> FileResponse:
    """The console; the API it calls is what enforces the admin role."""
    return FileResponse(STATIC / "admin.html", headers={"Cache-Control": "no-store"})


@pages.get("/admin/admin.js")
def admin_script() -> FileResponse:
    return FileResponse(STATIC / "admin.js", media_type="text/javascript")
