"""End-to-end conversation benchmark against a running product (`make run`).

Two runs of 20 concurrent senders for 60 s each, reported side by side:
- `paced`: each sender is a customer who reads the reply and types the next message after a think time
  (uniform 1-3 s by default), which is how 20 simultaneous chats load a contact centre; the per-turn
  latency targets (KB path, Rasa path) are judged here;
- `saturated`: no think time at all, every sender fires its next message the moment the reply lands:
  the throughput ceiling of this machine, where latency is queueing (senders / throughput).
Every message carries an idempotency key and a sample is retried to check nothing is processed twice.
Prints one JSON object.
Usage: python bench/conversation.py [--url http://127.0.0.1:8000] [--seconds 60] [--senders 20]
       [--think-ms 1000 3000] [--only paced|saturated]
"""

import argparse
import asyncio
import json
import random
import statistics
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
DEV_QUERIES = ROOT.parent / "shared" / "data" / "kb" / "dev_queries.jsonl"
KB_PATH_KINDS = {"answer", "suggest"}
DIALOGUE_TEXTS = ["你好", "谢谢", "好的谢谢，再见", "今天天气怎么样", "嗯嗯", "在吗"]


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return round(ordered[max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))], 1) if ordered else 0.0


async def turn(http: httpx.AsyncClient, sender: str, text: str, key: str) -> tuple[float, dict | None]:
    started = time.perf_counter()
    try:
        response = await http.post(
            "/api/v1/channels/rest/messages", json={"sender": sender, "text": text, "message_id": key}
        )
        response.raise_for_status()
        return (time.perf_counter() - started) * 1000, response.json()
    except httpx.HTTPError:
        return (time.perf_counter() - started) * 1000, None


async def run(url: str, seconds: float, senders: int, think_ms: tuple[float, float]) -> dict:
    questions = [
        json.loads(line)["q"]
        for line in DEV_QUERIES.read_text(encoding="utf-8").splitlines()
        if line.strip() and not json.loads(line)["expect"].startswith("@")
    ]
    rng = random.Random(11)
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        health = (await http.get("/health")).json()
        lat: dict[str, list[float]] = {"kb": [], "rasa": []}
        sent: list[tuple[str, str, str, dict]] = []
        errors = 0
        stop = time.monotonic() + seconds

        async def sender_loop(i: int) -> None:
            nonlocal errors
            while time.monotonic() < stop:
                sender = f"bench-{i}-{uuid.uuid4().hex[:6]}"
                for _ in range(3):
                    text = rng.choice(questions) if rng.random() < 0.7 else rng.choice(DIALOGUE_TEXTS)
                    key = uuid.uuid4().hex
                    ms, body = await turn(http, sender, text, key)
                    if body is None:
                        errors += 1
                        continue
                    kinds = {r["kind"] for r in body["replies"]}
                    lat["kb" if kinds & KB_PATH_KINDS else "rasa"].append(ms)
                    sent.append((sender, text, key, body))
                    if body["status"] != "bot":
                        break
                    if think_ms[1] > 0:
                        await asyncio.sleep(rng.uniform(*think_ms) / 1000)

        started = time.monotonic()
        await asyncio.gather(*(sender_loop(i) for i in range(senders)))
        elapsed = time.monotonic() - started

        # Retried deliveries must replay, never reprocess.
        duplicates = 0
        for sender, text, key, body in rng.sample(sent, min(200, len(sent))):
            _, again = await turn(http, sender, text, key)
            if again is None or not again.get("replayed") or again["replies"] != body["replies"]:
                duplicates += 1
    return {
        "rasa": health.get("components", {}).get("rasa"),
        "senders": senders,
        "think_ms": list(think_ms),
        "seconds": round(elapsed, 1),
        "turns": len(sent),
        "errors": errors,
        "throughput_turns_per_s": round(len(sent) / elapsed, 1) if elapsed else 0.0,
        "kb_turns": len(lat["kb"]),
        "kb_p50_ms": round(statistics.median(lat["kb"]), 1) if lat["kb"] else 0.0,
        "kb_p95_ms": pct(lat["kb"], 95),
        "rasa_turns": len(lat["rasa"]),
        "rasa_p50_ms": round(statistics.median(lat["rasa"]), 1) if lat["rasa"] else 0.0,
        "rasa_p95_ms": pct(lat["rasa"], 95),
        "retries_checked": min(200, len(sent)),
        "duplicated_or_lost_on_retry": duplicates,
    }


async def main_async(url: str, seconds: float, senders: int, think_ms: tuple[float, float], only: str | None) -> dict:
    result: dict = {"url": url}
    if only in (None, "paced"):
        result["paced"] = await run(url, seconds, senders, think_ms)
    if only in (None, "saturated"):
        result["saturated"] = await run(url, seconds, senders, (0.0, 0.0))
    return result


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--senders", type=int, default=20)
    parser.add_argument("--think-ms", type=float, nargs=2, default=(1000.0, 3000.0))
    parser.add_argument("--only", choices=("paced", "saturated"))
    args = parser.parse_args()
    outcome = asyncio.run(main_async(args.url, args.seconds, args.senders, tuple(args.think_ms), args.only))
    print(json.dumps(outcome, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
