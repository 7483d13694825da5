"""The BM25 legs' storage: a bulk build, in chunks, scores exactly like documents added one by one."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from knowledge.retrieval.lexical import SparseBM25, Vocabulary

TERMS = [f"t{i}" for i in range(40)]


def _docs(n: int, seed: int = 3) -> list[list[str]]:
    rng = random.Random(seed)
    # Skewed term choice and repeats, so columns differ in length and term frequencies exceed 1.
    return [[TERMS[min(int(rng.expovariate(0.15)), 39)] for _ in range(rng.randint(0, 9))] for _ in range(n)]


def _reference(docs: list[list[str]], query: list[str], k1: float, b: float) -> np.ndarray:
    """Textbook BM25, written out independently of the index."""
    lengths = [len(doc) for doc in docs]
    avgdl = sum(lengths) / len(lengths)
    scores = np.zeros(len(docs))
    qnorm = k1 * (1 - b + b * len(query) / avgdl)
    for term in set(query):
        df = sum(term in doc for doc in docs)
        if df == 0:
            continue
        idf = math.log(1 + (len(docs) - df + 0.5) / (df + 0.5))
        qtf = query.count(term)
        qweight = qtf * (k1 + 1) / (qtf + qnorm)
        for row, doc in enumerate(docs):
            tf = doc.count(term)
            if tf:
                norm = k1 * (1 - b + b * max(len(doc), 1) / avgdl)
                scores[row] += idf * qweight * tf * (k1 + 1) / (tf + norm)
    return scores


@pytest.mark.parametrize("chunk", [1, 7, 50, 1 << 20])
def test_a_chunked_bulk_build_scores_like_textbook_bm25(chunk: int) -> None:
    docs = _docs(300)
    index = SparseBM25(k1=1.2, b=0.5)
    builder = index.builder()
    builder._chunk = chunk
    for row, doc in enumerate(docs):
        builder.add(row, doc)
    builder.finish()
    for query in (["t0"], ["t1", "t1", "t5"], ["t30", "t2", "nothing"]):
        scores, _, hits = index.score(query, len(docs))
        np.testing.assert_allclose(scores, _reference(docs, query, 1.2, 0.5), rtol=1e-5, atol=1e-6)
        assert set(hits.tolist()) == {row for row, doc in enumerate(docs) if set(doc) & set(query)}


def test_live_additions_and_removals_after_a_bulk_build() -> None:
    docs = _docs(120)
    index = SparseBM25(k1=1.2, b=0.5)
    builder = index.builder()
    builder._chunk = 16
    for row, doc in enumerate(docs[:100]):
        builder.add(row, doc)
    builder.finish()
    avgdl = index.avgdl
    # Twenty live upserts, more than the compaction limit of small segments; one brings new terms.
    for row in range(100, 120):
        index.add([row], [docs[row] + (["fresh"] if row == 110 else [])])
    index.remove([3, 111])
    assert index.avgdl == avgdl  # live edits never move the length normalisation
    alive = [row for row in range(120) if row not in (3, 111)]
    scores, _, hits = index.score(["fresh", "t1"], 120)
    assert 110 in hits.tolist() and 3 not in hits.tolist() and 111 not in hits.tolist()
    assert index.has_live("fresh") and not index.has_live("never-seen")
    df = sum("t1" in docs[row] for row in alive)
    assert index._postings(index.vocab.get("t1"))[0].shape[0] == df  # type: ignore[arg-type]
    assert scores[3] == 0.0 and scores[110] > 0.0


def test_vocabulary_keeps_columns_for_bulk_and_live_terms() -> None:
    vocabulary = Vocabulary(np.sort(np.array([hash("a"), hash("b"), hash("c")], dtype=np.int64)))
    bulk = {term: vocabulary.get(term) for term in "abc"}
    assert sorted(bulk.values()) == [0, 1, 2]  # type: ignore[type-var]
    assert vocabulary.get("d") is None and "d" not in vocabulary
    assert vocabulary.column("d") == 3 and vocabulary.column("d") == 3 and "d" in vocabulary
    assert vocabulary.columns(["c", "zz", "d", "a"]) == [bulk["c"], None, 3, bulk["a"]]
    assert len(vocabulary) == 4
