"""End-to-end conversation benchmark against a running product (`make run`).

Per-turn latency on the knowledge path and on the Rasa path, then sustained throughput with 20
concurrent senders for 60 s; every message carries an idempotency key and a sample is retried to
check nothing is processed twice. Prints one JSON object.
Usage: python bench/conversation.py [--url http://127.0.0.1:8000] [--seconds 60] [--senders 20]
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


async def main_async(url: str, seconds: float, senders: int) -> dict:
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
        "url": url,
        "rasa": health.get("components", {}).get("rasa"),
        "senders": senders,
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


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--senders", type=int, default=20)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main_async(args.url, args.seconds, args.senders)), ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
