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
import http.server
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

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


class FakeApi(http.server.ThreadingHTTPServer):
    """WeChat's customer-service API on loopback (the answer-later path pushes through it): counts pushes."""

    daemon_threads = True
    pushed: set[str]


class _ApiHandler(http.server.BaseHTTPRequestHandler):
    server: FakeApi

    def do_GET(self) -> None:
        self._json({"access_token": "BENCH-TOKEN", "expires_in": 7200})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("content-length", "0"))) or b"{}")
        self.server.pushed.add(str(body.get("touser", "")))
        self._json({"errcode": 0, "errmsg": "ok"})

    def _json(self, payload: dict[str, object]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


def fake_api() -> FakeApi:
    api = FakeApi(("127.0.0.1", 0), _ApiHandler)
    api.pushed = set()
    threading.Thread(target=api.serve_forever, daemon=True).start()
    return api


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


class Connection:
    """A bare HTTP/1.1 keep-alive connection: the bench client must cost far less than the server it measures
    (httpx spends about as much CPU per request as the endpoint does, and shares this machine's two cores)."""

    def __init__(self, port: int):
        self._port = port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def post(self, params: dict[str, str], body: bytes) -> tuple[int, bytes]:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection("127.0.0.1", self._port)
        assert self._reader is not None
        head = (
            f"POST /api/v1/channels/wechat?{urlencode(params)} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: text/xml\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self._writer.write(head.encode() + body)
        status = int((await self._reader.readline()).split()[1])
        length = 0
        while (line := await self._reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value)
        return status, await self._reader.readexactly(length)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


async def run(port: int, concurrency: int, waves: int, api: FakeApi, paced: bool) -> dict:
    latencies: list[float] = []
    acked: list[float] = []  # `success` at once, the answer pushed later
    answered: list[float] = []  # a passive reply: the answer itself
    errors = 0
    answers: dict[str, str] = {}
    retries = retry_mismatch = passive = 0
    deferred: set[str] = set()
    pool: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(concurrency + 5):
        pool.put_nowait(Connection(port))

    async def one(openid: str, msg_id: str, text: str) -> tuple[str, str | None]:
        nonlocal errors
        params, body = delivery(openid, msg_id, text)
        connection = await pool.get()
        started = time.perf_counter()
        try:
            status, content = await asyncio.wait_for(connection.post(params, body), timeout=10)
            if status != 200:
                raise ValueError(status)
            latencies.append((time.perf_counter() - started) * 1000)
            pool.put_nowait(connection)
            answer = answer_of(content)
            (acked if answer == "success" else answered).append(latencies[-1])
            return msg_id, answer
        except (OSError, ValueError, TimeoutError, asyncio.IncompleteReadError):
            errors += 1
            connection.close()
            pool.put_nowait(Connection(port))
            return msg_id, None

    # Warm-up wave (first-request costs: connections, model caches), not counted.
    warm = [(f"oWarm{i}", f"w{i}", QUESTIONS[i % len(QUESTIONS)]) for i in range(concurrency)]
    warm_results = await asyncio.gather(*(one(*d) for d in warm))
    if paced:
        # Its answers too are out before the first measured burst (else that burst meets them).
        late = {openid for (openid, _, _), (_, answer) in zip(warm, warm_results, strict=True) if answer == "success"}
        while not late <= api.pushed:
            await asyncio.sleep(0.05)
    latencies.clear()
    acked.clear()
    answered.clear()
    errors = 0
    previous: list[tuple[str, str, str]] = []
    for wave in range(waves):
        batch = [
            (f"oBench{wave}x{i}", f"{wave * 1000 + i}", QUESTIONS[(wave + i) % len(QUESTIONS)])
            for i in range(concurrency)
        ]
        replay = previous[:5]
        results = await asyncio.gather(*(one(*d) for d in batch + replay))
        for (openid, _, _), (msg_id, answer), is_retry in zip(
            batch + replay, results, [False] * len(batch) + [True] * len(replay), strict=True
        ):
            if answer is None:
                continue
            if answer == "success":
                deferred.add(openid)
            if is_retry:
                retries += 1
                retry_mismatch += answers.get(msg_id) != answer
            else:
                answers[msg_id] = answer
                passive += answer != "success"
        previous = batch
        if paced:
            # Bursts, not overload: the next burst comes once this one's answers are out.
            while not {openid for openid, _, _ in batch} & deferred <= api.pushed:
                await asyncio.sleep(0.05)
    # The floor of this machine: the same waves refused at the first check (bad signature), no turn at all.
    floor: list[float] = []

    async def refused() -> None:
        connection = await pool.get()
        started = time.perf_counter()
        await connection.post({"signature": "0", "timestamp": "0", "nonce": "0"}, b"")
        floor.append((time.perf_counter() - started) * 1000)
        pool.put_nowait(connection)

    for _ in range(min(waves, 5)):
        await asyncio.gather(*(refused() for _ in range(concurrency)))
    while not pool.empty():
        pool.get_nowait().close()
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
        "p95_success_ms": pct(acked, 95),
        "p95_passive_ms": pct(answered, 95),
        "floor_p95_ms": pct(floor, 95),
        "deferred": sorted(deferred),
        "target_p95_ms": 100,
    }


def prepare(var: Path, database_url: str) -> None:
    from common.db import make_engine, make_session_factory, table_names
    from gateway import migrate
    from knowledge import flows
    from knowledge.settings import KnowledgeSettings

    if table_names(database_url):
        raise SystemExit("the bench writes thousands of rows: give it an empty database")
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
    # Bursts of `concurrency` simultaneous deliveries, each once the previous burst is answered; without it the
    # waves come as fast as they are acknowledged, far beyond what the answering can keep up with.
    parser.add_argument("--paced", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kefu-wechat-bench-") as tmp:
        var = Path(tmp)
        database_url = args.database_url or f"sqlite:///{var / 'kefu.db'}"
        prepare(var, database_url)
        port = free_port()
        api = fake_api()
        env = os.environ | {
            "KEFU_VAR_DIR": str(var),
            "KEFU_DATABASE_URL": database_url,
            "KEFU_RASA_URL": "http://127.0.0.1:9",
            "KEFU_LOG_LEVEL": "WARNING",
            "KEFU_WECHAT_TOKEN": TOKEN,
            "KEFU_WECHAT_APPID": APPID,
            "KEFU_WECHAT_SECRET": "bench-secret",
            "KEFU_WECHAT_AES_KEY": AES_KEY,
            "KEFU_WECHAT_API_BASE": f"http://127.0.0.1:{api.server_address[1]}",
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
            result = asyncio.run(run(port, args.concurrency, args.waves, api, args.paced))
            # Every `success` must be followed by the answer through the customer-service API.
            deferred = set(result.pop("deferred"))
            deadline = time.monotonic() + 120
            while not deferred <= api.pushed and time.monotonic() < deadline:
                time.sleep(0.2)
            result["deferred_answers"] = len(deferred)
            result["deferred_not_pushed"] = len(deferred - api.pushed)
            result["reply_budget_s"] = args.reply_budget_s
            result["paced"] = args.paced
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
    ok = result["errors"] == 0 and result["retry_mismatches"] == 0 and result["deferred_not_pushed"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
