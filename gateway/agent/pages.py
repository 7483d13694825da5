"""The agent console page and the consoles' shared static files (plain HTML + JS, no build step)."""

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

AGENT_STATIC = Path(__file__).parent / "static"
SHARED_STATIC = Path(__file__).resolve().parents[1] / "static"

router = APIRouter(include_in_schema=False)


@router.get("/agent")
def agent_page() -> FileResponse:
    """The console; it logs in through the agent API (session cookie + CSRF)."""
    return FileResponse(AGENT_STATIC / "agent.html", headers={"Cache-Control": "no-store"})


@router.get("/agent/agent.js")
def agent_script() -> FileResponse:
    return FileResponse(AGENT_STATIC / "agent.js", media_type="text/javascript")


@router.get("/static/{name}")
def shared_static(name: str) -> FileResponse:
    """console.css / console.js, shared by the agent and admin consoles."""
    from fastapi import HTTPException

    if name not in ("console.css", "console.js"):
        raise HTTPException(status_code=404, detail="not found")
    media = "text/css" if name.endswith(".css") else "text/javascript"
    return FileResponse(SHARED_STATIC / name, media_type=media)
