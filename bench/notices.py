"""Notices benchmark: 10,000 business events into delivered notices, with a kill -9 of the gateway mid-run.

Starts its own gateway (a subprocess on a free port, temp SQLite unless --database-url, no Rasa), posts N
roaming events for N distinct customers through the authenticated events API with C concurrent senders,
kills the gateway with SIGKILL once half of them are in, restarts it, re-posts every event whose answer it
did not see (same idempotency key), and waits until every notice is delivered. Then it counts, straight from
the database, the notice messages written into customers' conversations: `duplicates` are notices with
more than one message, `lost` are accepted events whose notice was never delivered.
Prints one JSON line.
    python bench/notices.py [--events 10000] [--concurrency 4] [--batch 100] [--database-url URL]
"""

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from sqlalchemy import func, select

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
KEY = "bench-events-key-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(var: Path, database_url: str, port: int) -> subprocess.Popen[bytes]:
    env = os.environ | {
        "KEFU_VAR_DIR": str(var),
        "KEFU_DATABASE_URL": database_url,
        "KEFU_RASA_URL": "http://127.0.0.1:9",
        "KEFU_LOG_LEVEL": "WARNING",
        "KEFU_NOTICES_API_KEY": KEY,
        # The bench runs at any hour: quiet hours would (rightly) hold the notices until morning.
        "KEFU_NOTICES_QUIET_HOURS": "",
        "KEFU_NOTICES_MAX_PER_DAY": "1000",
    }
    log = (var / "gateway.log").open("ab")
    command = [sys.executable, "-m", "uvicorn", "--factory", "gateway.app:create_app", "--port", str(port)]
    server = subprocess.Popen(
        [*command, "--log-level", "warning", "--no-access-log"], cwd=ROOT, env=env, stdout=log, stderr=log
    )
    deadline = time.monotonic() + 300
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).json()["components"]["db"] == "ok":
                return server
        except (httpx.HTTPError, ValueError, KeyError):
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"gateway did not start: {(var / 'gateway.log').read_text()[-3000:]}")
        time.sleep(0.3)


def event(i: int) -> dict[str, object]:
    return {
        "type": "roaming.returned_home",
        "key": f"bench-{i}",
        "customer": {"channel": "rest", "id": f"bench-{i}", "phone": f"139{i:08d}"},
        "data": {"package": "港澳日套餐"},
    }


async def post_all(
    url: str, todo: list[int], done: set[int], concurrency: int, batch: int, stop_after: int | None
) -> None:
    """Post events until all are answered (or `stop_after` answers, to kill the gateway mid-run).

    With `batch` > 1 the events go to `/api/v1/events/batch` that many at a time (how an operator's nightly
    export or scan feed arrives); 1 posts them one by one to `/api/v1/events`.
    """
    queue: asyncio.Queue[list[int]] = asyncio.Queue()
    for start in range(0, len(todo), batch):
        queue.put_nowait(todo[start : start + batch])
    headers = {"Authorization": f"Bearer {KEY}"}

    async def worker(http: httpx.AsyncClient) -> None:
        while not queue.empty():
            if stop_after is not None and len(done) >= stop_after:
                return
            chunk = queue.get_nowait()
            try:
                if batch == 1:
                    response = await http.post("/api/v1/events", json=event(chunk[0]), headers=headers)
                    accepted = chunk if response.status_code == 202 else []
                else:
                    body = {"events": [event(i) for i in chunk]}
                    response = await http.post("/api/v1/events/batch", json=body, headers=headers)
                    results = response.json()["results"] if response.status_code == 202 else []
                    accepted = [i for i, r in zip(chunk, results, strict=True) if r["event_id"] is not None]
                done.update(accepted)
            except httpx.HTTPError:
                return  # the gateway is gone; the events are re-posted after the restart

    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        await asyncio.gather(*(worker(http) for _ in range(concurrency)))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--batch", type=int, default=100, help="events per request (1: the single-event API)")
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()
    from common.db import make_engine, table_names
    from gateway import migrate
    from gateway.conversation.models import Message
    from gateway.notices.models import Notice, NoticeStatus

    with tempfile.TemporaryDirectory(prefix="kefu-notices-bench-") as tmp:
        var = Path(tmp)
        database_url = args.database_url or f"sqlite:///{var / 'kefu.db'}"
        if table_names(database_url):
            raise SystemExit("the bench writes thousands of rows: give it an empty database")
        migrate.upgrade(database_url)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        done: set[int] = set()
        started = time.monotonic()
        server = start(var, database_url, port)
        asyncio.run(post_all(url, list(range(args.events)), done, args.concurrency, args.batch, args.events // 2))
        os.kill(server.pid, signal.SIGKILL)  # mid-run: requests in flight, notices half sent
        server.wait()
        killed_after = len(done)
        server = start(var, database_url, port)
        try:
            # Re-post everything not acknowledged: the idempotency key makes a re-post of a stored event a no-op.
            again = [i for i in range(args.events) if i not in done]
            asyncio.run(post_all(url, again, done, args.concurrency, args.batch, None))
            engine = make_engine(database_url)
            deadline = time.monotonic() + 300
            with engine.connect() as c:
                while True:
                    pending = c.scalar(
                        select(func.count(Notice.id)).where(Notice.status == NoticeStatus.SCHEDULED.value)
                    )
                    if not pending or time.monotonic() > deadline:
                        break
                    time.sleep(0.5)
                seconds = time.monotonic() - started
                notices = c.scalar(select(func.count(Notice.id))) or 0
                delivered = c.scalar(select(func.count(Notice.id)).where(Notice.message_id.is_not(None))) or 0
                per_notice = c.execute(select(Message.payload).where(Message.kind == "notice")).scalars().all()
            engine.dispose()
        finally:
            server.terminate()
            server.wait(30)
    counts: dict[int, int] = {}
    for payload in per_notice:
        counts[int(payload["notice_id"])] = counts.get(int(payload["notice_id"]), 0) + 1
    result = {
        "bench": "notices",
        "events": args.events,
        "concurrency": args.concurrency,
        "batch": args.batch,
        "killed_after_acknowledged": killed_after,
        "seconds": round(seconds, 1),
        "events_per_s": round(args.events / seconds, 1),
        "notices": notices,
        "delivered": delivered,
        "duplicates": sum(1 for n in counts.values() if n > 1),
        "lost": args.events - len(counts),
        "database": "postgresql" if database_url.startswith("postgresql") else "sqlite",
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
