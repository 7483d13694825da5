"""`kefu eval dialogues` and `kefu eval queries`: drive a running product through its REST channel."""

import json
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from gateway.evaluation import EvalInputError, load_queries
from gateway.notices.rules import by_name

# A turn's outcome is its most significant reply.
SIGNIFICANCE = [
    "handoff",
    "form",
    "notice_confirmed",
    "notice_declined",
    "feedback_recorded",
    "answer",
    "suggest",
    "clarify",
    "greet",
    "thanks",
    "goodbye",
    "notice",
    "info",
]
NOTICE_TURN = "[notice:"
# What the operator's system says when a customer comes back from Hong Kong / Macao with a day pass on.
EVAL_EVENT_DATA = {"package": "港澳日套餐"}


class Product:
    """A running Kefu, spoken to as a customer and, for set-up, as the seeded demo agent."""

    def __init__(
        self, url: str, credentials: dict[str, str] | None, timeout: float = 30.0, events_key: str | None = None
    ):
        self.http = httpx.Client(base_url=url.rstrip("/"), timeout=timeout)
        self.credentials = credentials
        self.events_key = events_key
        self._agent_headers: dict[str, str] | None = None

    def set_agents_online(self, n: int) -> None:
        """Log the demo agent in (online) or set it offline, through the real agent API."""
        if self.credentials is None:
            raise EvalInputError("no demo agent credentials: run `kefu demo load` or pass --credentials")
        if self._agent_headers is None:
            response = self.http.post("/api/v1/agent/session", json=self.credentials)
            if response.status_code != 200:
                raise EvalInputError(f"demo agent login failed: {response.status_code} {response.text[:200]}")
            self._agent_headers = {"Authorization": f"Bearer {response.json()['token']}"}
        presence = "online" if n > 0 else "offline"
        self.http.put(
            "/api/v1/agent/presence", json={"presence": presence}, headers=self._agent_headers
        ).raise_for_status()

    def say(self, sender: str, text: str) -> tuple[dict[str, Any], float]:
        started = time.perf_counter()
        response = self.http.post("/api/v1/channels/rest/messages", json={"sender": sender, "text": text})
        elapsed = (time.perf_counter() - started) * 1000
        response.raise_for_status()
        return dict(response.json()), elapsed

    def notice(self, sender: str, name: str) -> dict[str, Any] | None:
        """Play the operator: post the business event behind notice `name` for this customer through the real
        events API, then read what reached the customer's REST channel. None if the notice is unknown."""
        rule = by_name(name)
        if rule is None:
            return None
        if not self.events_key:
            raise EvalInputError("no events API key: run `kefu demo load` (it writes it to the credentials file)")
        seen = self.http.get("/api/v1/channels/rest/messages", params={"sender": sender, "after": 0})
        after = max((r.get("message_id") or 0 for r in seen.json()), default=0) if seen.status_code == 200 else 0
        event = {
            "type": rule.event_type,
            "key": f"eval-{uuid.uuid4().hex}",
            "customer": {"channel": "rest", "id": sender, "phone": "13800138000"},
            "data": dict(EVAL_EVENT_DATA),
            # The eval runs at any hour: its notices must not wait for the end of quiet hours.
            "urgent": True,
        }
        response = self.http.post("/api/v1/events", json=event, headers={"Authorization": f"Bearer {self.events_key}"})
        if response.status_code in (404, 405):
            return None
        response.raise_for_status()
        replies = self.http.get("/api/v1/channels/rest/messages", params={"sender": sender, "after": after})
        replies.raise_for_status()
        return {"replies": replies.json()}


def outcome(body: dict[str, Any]) -> str:
    """The most significant reply of a turn, as `kind[:detail]`."""
    best: tuple[int, str] = (len(SIGNIFICANCE), "none")
    for reply in body.get("replies", []):
        kind = reply.get("kind", "info")
        rank = SIGNIFICANCE.index(kind) if kind in SIGNIFICANCE else len(SIGNIFICANCE) - 1
        if kind == "handoff" and reply.get("handoff"):
            label = f"handoff:{reply['handoff']['tier']}"
        elif kind == "form":
            label = "form:callback"
        elif kind == "answer" or (kind == "notice" and reply.get("kb_id")):
            # A notice written from a knowledge entry tells the customer that entry's answer.
            label = f"answer:{reply.get('kb_id')}"
            rank = SIGNIFICANCE.index("answer")
        else:
            label = kind
        if rank < best[0]:
            best = (rank, label)
    return best[1]


def _events_key(path: Path | None) -> str | None:
    if path is None or not path.is_file():
        return None
    key = json.loads(path.read_text(encoding="utf-8")).get("events_api_key")
    return str(key) if key else None


def _credentials(path: Path | None) -> dict[str, str] | None:
    if path is None or not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    agent = data.get("agent", data)
    return {"username": agent["username"], "password": agent["password"]}


def evaluate_dialogues(*, path: Path, url: str, credentials: Path | None) -> dict[str, Any]:
    """Turn accuracy and dialogue success of scripted dialogues."""
    try:
        dialogues = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, ValueError) as exc:
        raise EvalInputError(f"cannot read {path}: {exc}") from exc
    product = Product(url, _credentials(credentials), events_key=_events_key(credentials))
    turns = correct = succeeded = 0
    skipped: list[str] = []
    failures: list[dict[str, Any]] = []
    for dialogue in dialogues:
        product.set_agents_online(int(dialogue.get("setup", {}).get("agents_online", 1)))
        sender = f"eval-{dialogue['id']}-{uuid.uuid4().hex[:8]}"
        results: list[tuple[dict[str, Any], str]] = []
        for turn in dialogue["turns"]:
            if turn["user"].startswith(NOTICE_TURN):
                body = product.notice(sender, turn["user"][len(NOTICE_TURN) : -1])
                if body is None:
                    results = []
                    break
            else:
                body, _ = product.say(sender, turn["user"])
            results.append((turn, outcome(body)))
        if not results:
            skipped.append(dialogue["id"])
            continue
        wrong = [(t, got) for t, got in results if got != t["expect"]]
        turns += len(results)
        correct += len(results) - len(wrong)
        succeeded += not wrong
        if wrong:
            failures.append(
                {
                    "id": dialogue["id"],
                    "turns": [{"user": t["user"], "expect": t["expect"], "got": got} for t, got in results],
                }
            )
    product.set_agents_online(1)
    run = len(dialogues) - len(skipped)
    return {
        "dialogues": run,
        "turns": turns,
        "turn_accuracy": round(correct / turns, 4) if turns else 0.0,
        "dialogue_success": round(succeeded / run, 4) if run else 0.0,
        "skipped": skipped,
        "failures": failures,
    }


def _expected(label: str, got: str) -> bool:
    if label == "@none":
        return got == "clarify"
    if label in ("@request_human", "@complain"):
        return got == "handoff:human_text"
    if label == "@request_voice":
        return got in ("form:callback", "handoff:human_voice")
    if label == "@greet":
        return got == "greet"
    if label == "@thanks":
        return got in ("thanks", "goodbye")
    if label == "@goodbye":
        return got == "goodbye"
    return got == f"answer:{label}"


def evaluate_queries_live(*, path: Path, url: str, credentials: Path | None) -> dict[str, Any]:
    """Each query as a fresh conversation with one agent online."""
    queries = [q for q in load_queries(path) if q["as"] == "customer"]
    product = Product(url, _credentials(credentials))
    product.set_agents_online(1)
    rows: list[dict[str, Any]] = []
    latencies: list[float] = []
    for q in queries:
        body, ms = product.say(f"evalq-{uuid.uuid4().hex[:10]}", q["q"])
        latencies.append(ms)
        got = outcome(body)
        suggested = [
            o.get("payload", "")
            for r in body.get("replies", [])
            if r.get("kind") == "suggest"
            for o in r.get("options", [])
        ]
        rows.append(
            {
                "q": q["q"],
                "expect": q["expect"],
                "got": got,
                "ok": _expected(q["expect"], got),
                "suggested": any(q["expect"] in p for p in suggested),
            }
        )
    kb = [r for r in rows if not r["expect"].startswith("@")]
    nones = [r for r in rows if r["expect"] == "@none"]
    commands = [r for r in rows if r["expect"].startswith("@") and r["expect"] != "@none"]
    per_label: dict[str, dict[str, float]] = {}
    for r in rows:
        label = r["expect"] if r["expect"].startswith("@") else "kb"
        bucket = per_label.setdefault(label, {"n": 0, "correct": 0})
        bucket["n"] += 1
        bucket["correct"] += r["ok"]
    for bucket in per_label.values():
        bucket["accuracy"] = round(bucket["correct"] / bucket["n"], 4)

    def share(part: int, whole: int) -> float:
        return round(part / whole, 4) if whole else 0.0

    ordered = sorted(latencies)
    return {
        "n": len(rows),
        "accuracy": share(sum(bool(r["ok"]) for r in rows), len(rows)),
        "kb_accuracy": share(sum(bool(r["ok"]) for r in kb), len(kb)),
        "kb_answer_or_suggest": share(sum(bool(r["ok"] or r["suggested"]) for r in kb), len(kb)),
        "none_accuracy": share(sum(bool(r["ok"]) for r in nones), len(nones)),
        "commands_accuracy": share(sum(bool(r["ok"]) for r in commands), len(commands)),
        "per_label": per_label,
        "p50_ms": round(statistics.median(latencies), 1) if latencies else 0.0,
        "p95_ms": round(ordered[max(0, round(0.95 * len(ordered) + 0.5) - 1)], 1) if ordered else 0.0,
        "misses": [r for r in rows if not r["ok"]],
    }
