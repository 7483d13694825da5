"""Retrieval engine of the knowledge base: pure, DB-free, safe to import (nothing heavy loads
until an embedder, Normaliser or HybridIndex is constructed).

Pipeline: :class:`Normaliser` (OpenCC Traditional->Simplified, NFKC, case folding, noise
stripping, data units, synonym table) -> legs (BM25 over jieba words, character bigrams and
fuzzy pinyin bigrams of every question string; BM25 over answers+tags; dense embeddings of every
question string in FAISS; an entry classifier trained at ``rebuild()`` on the KB's questions and
answer sentences; exact-match evidence) -> a fusion model learned at ``rebuild()`` from the KB's
own paraphrases -> one calibrated confidence -> tier ``answer`` / ``suggest`` / ``none``.
"""

from knowledge.retrieval.config import RetrievalConfig
from knowledge.retrieval.embedders import (
    Embedder,
    SentenceTransformerEmbedder,
    UseEmbedder,
    make_embedder,
)
from knowledge.retrieval.entries import Hit, IndexedEntry, SearchOutcome
from knowledge.retrieval.index import HybridIndex, entries_checksum
from knowledge.retrieval.normalise import Normaliser, default_synonyms_path

__all__ = [
    "Embedder",
    "Hit",
    "HybridIndex",
    "IndexedEntry",
    "Normaliser",
    "RetrievalConfig",
    "SearchOutcome",
    "SentenceTransformerEmbedder",
    "UseEmbedder",
    "default_synonyms_path",
    "entries_checksum",
    "make_embedder",
]
