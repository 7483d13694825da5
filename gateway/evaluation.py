"""`kefu kb eval`: retrieval metrics of a labelled query file, measured through the product's own search."""

import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from common.db import make_engine, make_session_factory
from common.settings import CommonSettings
from gateway import migrate
from knowledge import service
from knowledge.flows import ImportRejected, import_jsonl
from knowledge.models import Audience
from knowledge.settings import KnowledgeSettings

NONE_LABEL = "@none"
RANK_DEPTH = 5


class EvalInputError(Exception):
    """The query or knowledge file cannot be evaluated."""


def load_queries(path: Path) -> list[dict[str, str]]:
    """Read a query file in the format of ``shared/data/kb/dev_queries.jsonl``."""
    queries = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise EvalInputError(f"cannot read {path}: {exc}") from exc
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            queries.append({"q": str(row["q"]), "expect": str(row["expect"]), "as": str(row.get("as", "customer"))})
        except (ValueError, KeyError, TypeError) as exc:
            raise EvalInputError(f"{path} line {number}: {exc}") from exc
        if queries[-1]["as"] not in ("customer", "agent"):
            raise EvalInputError(f"{path} line {number}: 'as' must be customer or agent")
    return queries


def evaluate_queries(*, queries_path: Path, kb_path: Path, details: bool = False) -> dict[str, Any]:
    """Load the KB into a throwaway database, index it, and score every KB query (commands skipped)."""
    from gateway.app import open_live_index

    queries = load_queries(queries_path)
    with tempfile.TemporaryDirectory(prefix="kefu-eval-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'eval.db'}"
        migrate.upgrade(url)
        engine = make_engine(url)
        factory = make_session_factory(engine)
        try:
            import_jsonl(session_factory=factory, path=kb_path, actor="eval")
        except ImportRejected as exc:
            raise EvalInputError(str(exc)) from exc
        kb_settings = KnowledgeSettings(index_dir=Path(tmp) / "index")
        live = open_live_index(
            common=CommonSettings(var_dir=Path(tmp)), kb_settings=kb_settings, session_factory=factory
        )
        with factory() as db_session:
            entries = service.get_all(db_session=db_session)
        engine.dispose()
    by_id = {e.id: e for e in entries}
    agent_only = {e.id for e in entries if e.audience == Audience.AGENT_ONLY}

    scored = [q for q in queries if not q["expect"].startswith("@") or q["expect"] == NONE_LABEL]
    # A warm-up so one-off lazy loading is not counted as query latency.
    service.search(index=live.index, query="你好", audience="customer")
    latencies: list[float] = []
    rows: list[dict[str, Any]] = []
    for q in scored:
        started = time.perf_counter()
        outcome = service.search(index=live.index, query=q["q"], audience=q["as"], limit=RANK_DEPTH)  # type: ignore[arg-type]
        latencies.append((time.perf_counter() - started) * 1000)
        ranked = [by_id[h.entry_id].external_id for h in outcome.hits if h.entry_id in by_id]
        leaked = q["as"] == "customer" and any(h.entry_id in agent_only for h in outcome.hits)
        rows.append(
            {
                **q,
                "tier": outcome.tier,
                "ranked": ranked,
                "leak": leaked,
                "confidence": round(outcome.hits[0].confidence, 4) if outcome.hits else 0.0,
            }
        )

    customer_kb = [r for r in rows if r["as"] == "customer" and r["expect"] != NONE_LABEL]
    agent_kb = [r for r in rows if r["as"] == "agent" and r["expect"] != NONE_LABEL]
    nones = [r for r in rows if r["expect"] == NONE_LABEL]
    answered = [r for r in rows if r["as"] == "customer" and r["tier"] == "answer"]
    correct_answers = [r for r in answered if r["ranked"][:1] == [r["expect"]]]

    def share(part: int, whole: int) -> float:
        return round(part / whole, 4) if whole else 0.0

    result: dict[str, Any] = {
        "n_kb": len(entries),
        "n_queries": len(scored),
        "skipped_commands": len(queries) - len(scored),
        "top1": share(sum(r["ranked"][:1] == [r["expect"]] for r in customer_kb), len(customer_kb)),
        "top3": share(sum(r["expect"] in r["ranked"][:3] for r in customer_kb), len(customer_kb)),
        "agent_top1": share(sum(r["ranked"][:1] == [r["expect"]] for r in agent_kb), len(agent_kb)),
        "answer_rate": share(sum(r["tier"] == "answer" for r in customer_kb), len(customer_kb)),
        "answer_precision": share(len(correct_answers), len(answered)),
        "none_rejection": share(sum(r["tier"] != "answer" for r in nones), len(nones)),
        "self_service": share(len(correct_answers), len(customer_kb)),
        "agent_only_leaks": sum(r["leak"] for r in rows),
        "p50_ms": round(statistics.median(latencies), 2) if latencies else 0.0,
        "p95_ms": round(_percentile(latencies, 95), 2) if latencies else 0.0,
    }
    if details:
        result["misses"] = [
            {k: r[k] for k in ("q", "expect", "as", "tier", "ranked", "confidence")}
            for r in rows
            if (r["expect"] == NONE_LABEL and r["tier"] == "answer")
            or (r["expect"] != NONE_LABEL and (r["ranked"][:1] != [r["expect"]] or r["tier"] != "answer"))
        ]
    return result


def _percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]
