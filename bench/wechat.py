"""WeChat endpoint under load: 50 concurrent signed, AES-encrypted deliveries per wave; prints one JSON line.

    python bench/wechat.py [--concurrency 50] [--waves 20] [--database-url URL]

Starts its own gateway (a subprocess on a free port, temp SQLite unless --database-url, the demo KB, no
Rasa, the WeChat API pointed at a dead port since every answer here is passive) and times each delivery
from send to WeChat-visible acknowledgement (the passive reply or `success`). Each wave also re-sends a
few MsgIds of the previous wave to check retries are answered identically and never start a second turn.
`floor_p95_ms` is the same load refused at the signature check (no turn): what this machine and the ASGI
stack cost by themselves. Target: p95_ms <= 100. `--reply-budget-s` below a turn's duration measures the
answer-later path (`success` at once, customer-service API push afterwards).
"""

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from connectors.wechat import crypto, messages  # noqa: E402

TOKEN = "bench-token-0123456789"
APPID = "wxbench0000000001"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
QUESTIONS = [
    "怎么查询话费余额？",
    "港澳日套餐怎么订购",
    "宽带怎么报装",
    "流量用完了怎么办",
    "怎么开发票",
    "你好",
    "谢谢",
]
ENVELOPE = crypto.Envelope(AES_KEY, APPID)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))], 1) if ordered else 0.0


def delivery(openid: str, msg_id: str, text: str) -> tuple[dict[str, str], bytes]:
    inner = (
        f"<xml><ToUserName><![CDATA[gh_bench]]></ToUserName><FromUserName>{messages.cdata(openid)}</FromUserName>"
        f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
        f"<Content>{messages.cdata(text)}</Content><MsgId>{msg_id}</MsgId></xml>"
    )
    ts, nonce = str(int(time.time())), str(random.randrange(10**9))
    encrypt = ENVELOPE.encrypt(inner)
    params = {
        "timestamp": ts,
        "nonce": nonce,
        "signature": crypto.signature(TOKEN, ts, nonce),
        "encrypt_type": "aes",
        "msg_signature": crypto.signature(TOKEN, ts, nonce, encrypt),
        "openid": openid,
    }
    return params, f"<xml><ToUserName>gh_bench</ToUserName><Encrypt>{encrypt}</Encrypt></xml>".encode()


def answer_of(body: bytes) -> str:
    if body == b"success":
        return "success"
    outer = messages.parse(body, max_bytes=1 << 20)
    return messages.parse(ENVELOPE.decrypt(outer["Encrypt"]).encode(), max_bytes=1 << 20)["Content"]


async def run(url: str, concurrency: int, waves: int) -> dict:
    latencies: list[float] = []
    errors = 0
    answers: dict[str, str] = {}
    retries = retry_mismatch = passive = 0
    limits = httpx.Limits(max_connections=concurrency * 2)
    async with httpx.AsyncClient(base_url=url, timeout=10, limits=limits) as http:

        async def one(openid: str, msg_id: str, text: str) -> tuple[str, str | None]:
            nonlocal errors
            params, body = delivery(openid, msg_id, text)
            started = time.perf_counter()
            try:
                response = await http.post("/api/v1/channels/wechat", params=params, content=body)
                response.raise_for_status()
                latencies.append((time.perf_counter() - started) * 1000)
                return msg_id, answer_of(response.content)
            except (httpx.HTTPError, ValueError):
                errors += 1
                return msg_id, None

        # Warm-up wave (first-request costs: connections, model caches), not counted.
        await asyncio.gather(*(one(f"oWarm{i}", f"w{i}", QUESTIONS[i % len(QUESTIONS)]) for i in range(concurrency)))
        latencies.clear()
        errors = 0
        previous: list[tuple[str, str, str]] = []
        for wave in range(waves):
            batch = [
                (f"oBench{wave}x{i}", f"{wave * 1000 + i}", QUESTIONS[(wave + i) % len(QUESTIONS)])
                for i in range(concurrency)
            ]
            replay = previous[:5]
            results = await asyncio.gather(*(one(*d) for d in batch + replay))
            for (msg_id, answer), is_retry in zip(results, [False] * len(batch) + [True] * len(replay), strict=True):
                if answer is None:
                    continue
                if is_retry:
                    retries += 1
                    retry_mismatch += answers.get(msg_id) != answer
                else:
                    answers[msg_id] = answer
                    passive += answer != "success"
            previous = batch
        # The floor of this machine: the same waves refused at the first check (bad signature), no turn at all.
        floor: list[float] = []

        async def refused() -> None:
            started = time.perf_counter()
            await http.post("/api/v1/channels/wechat", params={"signature": "0", "timestamp": "0", "nonce": "0"})
            floor.append((time.perf_counter() - started) * 1000)

        for _ in range(min(waves, 5)):
            await asyncio.gather(*(refused() for _ in range(concurrency)))
    return {
        "bench": "wechat",
        "mode": "aes",
        "concurrency": concurrency,
        "requests": len(latencies) + errors,
        "errors": errors,
        "passive_replies": passive,
        "retries": retries,
        "retry_mismatches": retry_mismatch,
        "p50_ms": pct(latencies, 50),
        "p95_ms": pct(latencies, 95),
        "max_ms": round(max(latencies), 1) if latencies else 0.0,
        "floor_p95_ms": pct(floor, 95),
        "target_p95_ms": 100,
    }


def prepare(var: Path, database_url: str) -> None:
    from common.db import make_engine, make_session_factory
    from gateway import migrate
    from knowledge import flows
    from knowledge.settings import KnowledgeSettings

    migrate.upgrade(database_url)
    engine = make_engine(database_url)
    flows.import_jsonl(
        session_factory=make_session_factory(engine), path=KnowledgeSettings().demo_kb_path, actor="demo"
    )
    engine.dispose()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--waves", type=int, default=20)
    parser.add_argument("--database-url", default="")
    # Below a turn's duration the endpoint answers `success` and pushes later (the answer-later path).
    parser.add_argument("--reply-budget-s", type=float, default=4.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kefu-wechat-bench-") as tmp:
        var = Path(tmp)
        database_url = args.database_url or f"sqlite:///{var / 'kefu.db'}"
        prepare(var, database_url)
        port = free_port()
        env = os.environ | {
            "KEFU_VAR_DIR": str(var),
            "KEFU_DATABASE_URL": database_url,
            "KEFU_RASA_URL": "http://127.0.0.1:9",
            "KEFU_LOG_LEVEL": "WARNING",
            "KEFU_WECHAT_TOKEN": TOKEN,
            "KEFU_WECHAT_APPID": APPID,
            "KEFU_WECHAT_SECRET": "bench-secret",
            "KEFU_WECHAT_AES_KEY": AES_KEY,
            "KEFU_WECHAT_API_BASE": "http://127.0.0.1:9",
            "KEFU_WECHAT_REPLY_BUDGET_S": str(args.reply_budget_s),
        }
        command = [sys.executable, "-m", "uvicorn", "--factory", "gateway.app:create_app", "--port", str(port)]
        log = (var / "gateway.log").open("wb")
        server = subprocess.Popen(
            [*command, "--log-level", "warning", "--no-access-log"], cwd=ROOT, env=env, stdout=log, stderr=log
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 300
            while True:
                try:
                    if httpx.get(f"{url}/health", timeout=2).json()["components"]["index"] == "ok":
                        break
                except (httpx.HTTPError, ValueError, KeyError):
                    pass
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"gateway did not start: {(var / 'gateway.log').read_text()[-3000:]}")
                time.sleep(0.5)
            result = asyncio.run(run(url, args.concurrency, args.waves))
            result["reply_budget_s"] = args.reply_budget_s
            result["load_avg_1m"] = os.getloadavg()[0]
        finally:
            server.terminate()
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
            log.close()
            print((var / "gateway.log").read_text()[-2000:], file=sys.stderr)
    print(json.dumps(result, ensure_ascii=False))
    return 0 if result["errors"] == 0 and result["retry_mismatches"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
