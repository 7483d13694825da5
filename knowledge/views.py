"""Customer-facing knowledge search. Agent and admin views live behind authentication (consoles)."""

import re
import threading
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, Field

from common.web import DbSession
from knowledge import service
from knowledge.flows import LiveIndex
from knowledge.schemas import CustomerEntry, CustomerSearchResult, SearchHitOut

router = APIRouter(prefix="/api/v1/knowledge", tags=["knowledge"])

MAX_QUERY_CHARS = 20_000


def get_live_index(request: Request) -> LiveIndex:
    """The process's index, or 503 while it is still being built."""
    ready: threading.Event | None = getattr(request.app.state, "index_ready", None)
    live: LiveIndex | None = getattr(request.app.state, "live_index", None)
    if live is None or (ready is not None and not ready.is_set()):
        raise HTTPException(status_code=503, detail="the knowledge index is still loading; retry shortly")
    return live


Index = Annotated[LiveIndex, Depends(get_live_index)]


class SearchRequest(BaseModel):
    q: str = Field(max_length=MAX_QUERY_CHARS)


# Plain `def` endpoints: FastAPI runs them in its threadpool, so encoding, FAISS and the database never
# block the event loop.
@router.get("/search", response_model=CustomerSearchResult)
def search_get(
    live: Index,
    db_session: DbSession,
    q: Annotated[str, Query(max_length=MAX_QUERY_CHARS, description="the customer's question")],
) -> CustomerSearchResult:
    """Search as a customer sees it: published, in-date, audience `all`, no internal fields."""
    return _customer_search(live, db_session, q)


@router.post("/search", response_model=CustomerSearchResult)
def search_post(live: Index, db_session: DbSession, body: SearchRequest) -> CustomerSearchResult:
    """The same search for long questions that do not fit a URL."""
    return _customer_search(live, db_session, body.q)


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _customer_search(live: LiveIndex, db_session: DbSession, q: str) -> CustomerSearchResult:
    if not _CONTROL.sub("", q).strip():
        raise HTTPException(status_code=422, detail="the query is empty")
    try:
        outcome = service.search(index=live.index, query=q, audience="customer")
    except ValueError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from exc
    shown = outcome.hits[:1] if outcome.tier == "answer" else outcome.hits if outcome.tier == "suggest" else []
    entries = service.hydrate(db_session=db_session, entry_ids=[h.entry_id for h in shown])
    hits = [
        SearchHitOut(
            entry=CustomerEntry(
                id=entries[h.entry_id].external_id,
                category=entries[h.entry_id].category,
                title=entries[h.entry_id].title,
                answer=entries[h.entry_id].answer,
            ),
            confidence=round(h.confidence, 4),
        )
        for h in shown
        if h.entry_id in entries
    ]
    return CustomerSearchResult(query=q, tier=outcome.tier if hits or outcome.tier == "none" else "none", hits=hits)
