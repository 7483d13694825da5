"""Retrieval benchmark: the dev-set evaluation, then synthetic KBs of 10k and 100k entries (with
the dev set's top1 and self-service among them: the demo KB is their first entries).

Prints one JSON object. Each scale runs in its own process so its peak RSS is its own.
Usage: python bench/kb_retrieval.py [--scales 10000 100000] [--queries PATH]
"""

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

DEV_QUERIES = ROOT.parent / "shared" / "data" / "kb" / "dev_queries.jsonl"
DEMO_KB = ROOT / "knowledge" / "data" / "kb.jsonl"


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered) + 0.5) - 1))]


def synthetic_entries(n: int, seed: int = 7) -> list:
    """``n`` entries grown from the demo KB's strings: each base question gets a distinct product
    or place name and paraphrases with a few characters swapped, so strings do not repeat."""
    from knowledge.retrieval import IndexedEntry

    rng = random.Random(seed)
    base = [json.loads(line) for line in DEMO_KB.read_text(encoding="utf-8").splitlines()]
    alphabet = sorted(
        {ch for row in base for ch in row["title"] + "".join(row["similar"]) if "\u4e00" <= ch <= "\u9fff"}
    )
    entries = []
    for i in range(n):
        row = base[i % len(base)]
        if i < len(base):
            title, similar = row["title"], tuple(row["similar"])
        else:
            name = "".join(rng.choice(alphabet) for _ in range(3)) + rng.choice(["套餐", "业务", "卡", "包", "服务"])
            title = f"{name}：{row['title']}"

            def mutate(text: str, name: str = name) -> str:
                chars = list(text)
                for _ in range(2):
                    chars[rng.randrange(len(chars))] = rng.choice(alphabet)
                return f"{name}{''.join(chars)}"

            similar = tuple(mutate(s) for s in row["similar"])
        entries.append(
            IndexedEntry(
                id=i + 1,
                external_id=f"S{i + 1:06d}",
                category=row["category"],
                title=title,
                similar=similar,
                answer=row["answer"],
                tags=tuple(row["tags"]),
                audience=row["audience"],
            )
        )
    return entries


def run_scale(n: int, queries_path: Path) -> dict:
    from knowledge.retrieval import HybridIndex, IndexedEntry, Normaliser, RetrievalConfig, UseEmbedder
    from knowledge.settings import KnowledgeSettings

    entries = synthetic_entries(n)
    embedder = UseEmbedder()
    index = HybridIndex(
        embedder=embedder,
        config=RetrievalConfig(),
        synonyms=Normaliser.load_synonyms(KnowledgeSettings().synonyms_path),
    )
    started = time.perf_counter()
    index.rebuild(entries)
    build_s = time.perf_counter() - started

    rows = [json.loads(line) for line in queries_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    queries = [row["q"] for row in rows]
    # The first entries are the demo KB verbatim (S000001 is its first line): the dev labels still
    # apply, now among thousands of look-alike siblings and on the compressed dense layout.
    demo_ids = [json.loads(line)["id"] for line in DEMO_KB.read_text(encoding="utf-8").splitlines()]
    label_of = {f"S{i + 1:06d}": kb_id for i, kb_id in enumerate(demo_ids)}
    index.search(queries[0], audience="customer")
    latencies = []
    labelled = top1 = answered_right = 0
    for row in rows:
        t = time.perf_counter()
        outcome = index.search(row["q"], audience="customer")
        latencies.append((time.perf_counter() - t) * 1000)
        if row.get("as", "customer") == "customer" and not row["expect"].startswith("@"):
            labelled += 1
            right = bool(outcome.hits) and label_of.get(outcome.hits[0].external_id) == row["expect"]
            top1 += right
            answered_right += right and outcome.tier == "answer"

    update_ms = []
    for k in range(20):
        fresh = IndexedEntry(
            id=n + 1 + k,
            external_id=f"NEW{k:03d}",
            category="测试",
            title=f"彗星{k}号套餐怎么办理？",
            similar=(f"我想开彗星{k}号套餐",),
            answer="在APP办理。",
            tags=("彗星",),
            audience="all",
        )
        t = time.perf_counter()
        index.upsert(fresh)
        found = index.search(f"彗星{k}号套餐怎么办理", audience="customer")
        update_ms.append((time.perf_counter() - t) * 1000)
        assert found.hits and found.hits[0].external_id == fresh.external_id, "an update was not searchable"
    return {
        "entries": n,
        "strings": sum(1 + len(e.similar) for e in entries),
        "build_s": round(build_s, 1),
        "dev_top1": round(top1 / labelled, 4) if labelled else 0.0,
        "dev_self_service": round(answered_right / labelled, 4) if labelled else 0.0,
        "query_p50_ms": round(statistics.median(latencies), 2),
        "query_p95_ms": round(percentile(latencies, 95), 2),
        "update_to_searchable_p95_ms": round(percentile(update_ms, 95), 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--queries", type=Path, default=DEV_QUERIES)
    parser.add_argument("--scales", type=int, nargs="*", default=[10_000, 100_000])
    parser.add_argument("--child-scale", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_scale:
        print(json.dumps(run_scale(args.child_scale, args.queries)))
        return 0

    from gateway.evaluation import evaluate_queries

    result: dict = {"dev": evaluate_queries(queries_path=args.queries, kb_path=DEMO_KB), "scale": []}
    for n in args.scales:
        child = subprocess.run(
            [sys.executable, __file__, "--child-scale", str(n), "--queries", str(args.queries)],
            capture_output=True,
            text=True,
            check=False,
        )
        if child.returncode != 0:
            result["scale"].append({"entries": n, "error": child.stderr.strip().splitlines()[-1:]})
        else:
            result["scale"].append(json.loads(child.stdout.strip().splitlines()[-1]))
    print(json.dumps(result, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
