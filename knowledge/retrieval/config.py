"""Tunable knobs of the retrieval engine, each with a documented default."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class RetrievalConfig(BaseModel):
    """Thresholds and weights of :class:`~knowledge.retrieval.HybridIndex`.

    ``answer_threshold`` and ``suggest_threshold`` apply to the calibrated confidence, i.e. the
    probability (learned at ``rebuild()`` from the KB's own paraphrases, see ``fusion.py``) that
    the top hit is the right entry. Their defaults were chosen on the development query set
    (``dev_queries.jsonl``, customer queries, 160-entry demo KB) by sweeping the threshold in
    steps of 0.05 (then 0.02). With the entry-classifier leg the calibration is optimistic on
    customer queries: precision climbs to 0.946 at 0.60 (self-service 0.36, none-rejection
    0.92) and then stays on a 0.94-0.95 plateau up to 0.75 (a handful of confidently wrong
    answers), reaching 1.0 only at 0.80 where self-service falls to 0.17. ``answer_threshold``
    = 0.60 is the start of that plateau. ``suggest_threshold`` = 0.20: from 0.12 to 0.20 the
    out-of-scope queries offered "did you mean" choices fall from 8 of 12 to 4, while KB queries
    whose right entry is among the choices fall only from 140 to 133. Only these
    two numbers were chosen on dev data; fusion weights, the classifier and the calibration
    itself are learned from the KB at rebuild().
    """

    model_config = ConfigDict(extra="forbid")

    answer_threshold: float = Field(default=0.60, ge=0.0, le=1.0)
    suggest_threshold: float = Field(default=0.20, ge=0.0, le=1.0)
    max_suggestions: int = Field(default=4, ge=2, le=10)
    # A suggestion list is padded to two entries but further entries must reach this confidence,
    # so that "did you mean" does not offer obviously unrelated questions.
    suggestion_floor: float = Field(default=0.02, ge=0.0, le=1.0)
    embedder: str = "use"
    # A query that is one content word found in the questions of at least this many entries
    # (发票, 宽带, 积分) gets "did you mean" choices, never a direct answer.
    broad_query_entries: int = Field(default=3, ge=2)

    # Queries longer than this (after normalisation) are cut: long emotional messages carry their
    # question early, and the cost of every leg grows with the query length.
    max_query_chars: int = Field(default=400, ge=16)

    # BM25 parameters shared by the lexical legs. b is low because indexed strings are short
    # questions whose length says little about relevance.
    bm25_k1: float = Field(default=1.2, gt=0.0)
    bm25_b: float = Field(default=0.5, ge=0.0, le=1.0)

    # Answer sentences embedded per entry for the dense answer leg; later sentences are mostly
    # procedure detail, and each one costs an embedding at rebuild time.
    answer_segments: int = Field(default=8, ge=1)

    # Per leg, this many best entries enter the candidate pool that the fusion model ranks.
    candidate_pool: int = Field(default=20, ge=3)
    # Number of string neighbours fetched from FAISS per query (before grouping by entry).
    dense_neighbours: int = Field(default=64, ge=8)

    # FAISS: exact inner product up to this many vectors; above it a projected (dense_pca_dim),
    # IVF, 8-bit scalar-quantised index keeps 600k strings well under 100 MB. More dimensions
    # keep more of the exact neighbours (128: 84 % of top-1 neighbours, 256: 95 %) for more memory.
    # The demo KB forced onto that layout ranks as well as flat (dev top1 0.74 vs 0.73), while a
    # flat search of 30k vectors takes 4.4 ms against 0.3 ms: flat only for small indexes.
    dense_exact_max_vectors: int = Field(default=20_000, ge=1)
    dense_pca_dim: int = Field(default=128, ge=16)
    dense_nlist: int = Field(default=0, ge=0, description="IVF lists; 0 = 4*sqrt(n)")
    dense_nprobe: int = Field(default=24, ge=1)
    # Vectors that train PCA and the IVF lists (at most n/39 lists). The sample is in memory in
    # float32 with FAISS's copies while training: 50k cost ~250 MB of peak RSS, 20k ~100 MB.
    dense_train_sample: int = Field(default=20_000, ge=1000)

    # Self-supervised fusion training at rebuild(): at most this many leave-one-out queries,
    # of which this share are leave-one-entry-out negatives (the right outcome is "none").
    train_max_queries: int = Field(default=2000, ge=50)
    train_negative_share: float = Field(default=0.3, ge=0.05, le=0.8)
    train_seed: int = 20240611
    train_l2: float = Field(default=1.0, ge=0.0)
    # Share of positive training queries whose own string stays indexed (exact-match regime).
    train_exact_share: float = Field(default=0.1, ge=0.0, le=1.0)
    # Share of training queries given a homophone typo or a dropped character.
    train_typo_share: float = Field(default=0.3, ge=0.0, le=1.0)
    # Rank with a listwise (softmax over each query's candidates) model instead of pointwise LR.
    train_listwise: bool = True

    # Entry classifier leg (see classifier.py), trained at rebuild() on the KB's own strings.
    # Disabled above this many entries: its weights, training time and memory grow with
    # entries x vocabulary, i.e. about quadratically (160 entries: +4 s of rebuild; 300: +26 s;
    # 1000: +110 s and 1.7 GB peak).
    classifier_max_classes: int = Field(default=200, ge=0)
    # Training strings are sampled down to this many on large KBs to bound rebuild time.
    classifier_max_examples: int = Field(default=20_000, ge=100)
    # The fusion is trained on the classifier's output for strings it did not see: rows are split
    # into this many folds and each fold is scored by a model fitted on the others.
    classifier_folds: int = Field(default=3, ge=2, le=10)
    classifier_l2: float = Field(default=1e-4, gt=0.0)
    classifier_dense_scale: float = Field(default=1.0, gt=0.0)
    classifier_max_iter: int = Field(default=30, ge=5)
    # Character n-grams seen in fewer training strings are not features: a one-off n-gram is
    # memorised rather than learned, and the weight matrix (and training time) shrinks ~3x.
    classifier_min_df: int = Field(default=2, ge=1)
    # Confidence given to the top hit when the query is, up to filler words, one entry's indexed
    # title or paraphrase (and no other entry's): the operator wrote that string for that entry.
    exact_match_confidence: float = Field(default=0.95, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _ordered(self) -> RetrievalConfig:
        if self.suggest_threshold > self.answer_threshold:
            raise ValueError("suggest_threshold must not exceed answer_threshold")
        return self
