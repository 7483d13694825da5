"""Liveness and readiness: one JSON document with every component's state."""

from typing import Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

router = APIRouter(tags=["health"])

ComponentState = Literal["ok", "loading", "down", "error"]


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    components: dict[str, ComponentState]
    detail: dict[str, str] = {}


@router.get("/health", response_model=Health)
async def get_health(request: Request, response: Response) -> Health:
    """`ok` only when every component is ready; otherwise `degraded` with the reasons."""
    state = request.app.state
    components: dict[str, ComponentState] = {}
    detail: dict[str, str] = {}
    try:
        await run_in_threadpool(_ping, state.session_factory)
        components["db"] = "ok"
    except Exception as exc:
        components["db"] = "error"
        detail["db"] = type(exc).__name__
    if state.index_error:
        components["index"] = "error"
        detail["index"] = state.index_error
    else:
        components["index"] = "ok" if state.index_ready.is_set() else "loading"
    components["rasa"] = state.rasa_state
    status: Literal["ok", "degraded"] = "ok" if all(v == "ok" for v in components.values()) else "degraded"
    # A degraded gateway still serves (answers, handoff); only a dead database makes it unfit for traffic.
    if components["db"] != "ok":
        response.status_code = 503
    return Health(status=status, components=components, detail=detail)


def _ping(factory: sessionmaker[Session]) -> None:
    with factory() as db_session:
        db_session.execute(text("SELECT 1"))
