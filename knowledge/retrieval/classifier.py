"""Entry classifier leg: a multinomial logistic regression over the KB's own text.

Each entry is a class; its title, paraphrases and answer sentences are the training examples
(answer sentences because customers describe their situation in the answer's words; typo and
filler augmentations were tried and did not help). Features are the sentence embedding plus
TF-IDF of character unigrams and bigrams (trigrams and pinyin bigrams added nothing on the demo
KB but doubled the training time). Unlike nearest-neighbour legs, the weights learn which words
tell sibling entries apart (本月 vs 上个月, 补卡 vs 挂失) and which ones every sibling shares.

Entries added later by ``upsert`` get a class by weight imprinting (the normalised mean of their
strings' features, scaled like a trained class), so they are classifiable before the next
rebuild. Above ``classifier_max_classes`` entries the leg is disabled (a dense weight matrix over
100k classes would be far too large); the remaining legs then rank alone.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp


def char_grams(text: str, longest: int = 2) -> list[str]:
    compact = text.replace(" ", "")
    out: list[str] = []
    for size in range(1, longest + 1):
        out.extend(compact[index : index + size] for index in range(len(compact) - size + 1))
    return out


def _lbfgs(
    fun: Callable[[np.ndarray], tuple[float, np.ndarray]], x: np.ndarray, max_iter: int, memory: int = 8
) -> np.ndarray:
    """Plain L-BFGS with Armijo backtracking. scipy's L-BFGS-B spends most of its time in the
    bound-handling Fortran code when there are a million parameters; this needs only a few
    vector operations per step."""
    value, grad = fun(x)
    history: list[tuple[np.ndarray, np.ndarray, float]] = []
    for _ in range(max_iter):
        direction = grad.copy()
        alphas = []
        for s, y, rho in reversed(history):
            alpha = rho * float(s @ direction)
            direction -= alpha * y
            alphas.append(alpha)
        if history:
            s, y, _ = history[-1]
            direction *= float(s @ y) / float(y @ y)
        else:
            direction /= max(1.0, float(np.linalg.norm(direction)))
        for (s, y, rho), alpha in zip(history, reversed(alphas), strict=True):
            beta = rho * float(y @ direction)
            direction += (alpha - beta) * s
        direction = -direction
        slope = float(grad @ direction)
        if slope >= 0:
            history.clear()
            direction = -grad / max(1.0, float(np.linalg.norm(grad)))
            slope = float(grad @ direction)
        step = 1.0
        while True:
            candidate = x + step * direction
            new_value, new_grad = fun(candidate)
            if new_value <= value + 1e-4 * step * slope or step < 1e-6:
                break
            step *= 0.5
        s, y = candidate - x, new_grad - grad
        curvature = float(s @ y)
        if curvature > 1e-12:
            history.append((s, y, 1.0 / curvature))
            if len(history) > memory:
                history.pop(0)
        converged = value - new_value < 1e-6 * max(1.0, abs(value))
        x, value, grad = candidate, new_value, new_grad
        if converged:
            break
    return x


@dataclass
class EntryClassifier:
    """Linear softmax classifier over entries; classes are keyed by entry id (stable across
    save/load, unlike slots)."""

    classes: np.ndarray  # entry id of each weight column, int64
    vocab: dict[str, int]
    idf: np.ndarray  # float32, one per vocabulary term
    dense_scale: float
    w_dense: np.ndarray  # (dim, n_classes) float32
    w_sparse: np.ndarray  # (len(vocab), n_classes) float32
    bias: np.ndarray  # (n_classes,) float32
    # What each trained class scores (without bias) on its own training strings: the scale of
    # imprinted classes.
    self_score: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))

    # ------------------------------------------------------------------ features

    def _sparse(self, terms: Sequence[Sequence[str]]) -> sp.csr_matrix:
        return _tfidf(terms, self.vocab, self.idf)

    def logits(self, terms: Sequence[Sequence[str]], vectors: np.ndarray) -> np.ndarray:
        """(len(terms), n_classes) scores; softmax over any subset of classes is P(entry)."""
        dense = (np.asarray(vectors, dtype=np.float32) * np.float32(self.dense_scale)) @ self.w_dense
        return np.asarray(dense + self._sparse(terms) @ self.w_sparse + self.bias, dtype=np.float64)

    # ------------------------------------------------------------------ live edits

    def imprint(self, entry_id: int, terms: Sequence[Sequence[str]], vectors: np.ndarray) -> None:
        """Give ``entry_id`` (new or edited) a class without retraining: its weight is the mean of
        its strings' features, scaled so that they score like trained classes score their own
        training strings."""
        self.drop(entry_id)
        if not terms or self.classes.shape[0] == 0:
            return
        dense = (np.asarray(vectors, dtype=np.float32) * np.float32(self.dense_scale)).mean(axis=0)
        sparse = np.asarray(self._sparse(terms).mean(axis=0)).ravel().astype(np.float32)
        norm2 = float(dense @ dense + sparse @ sparse)
        if norm2 <= 0:
            return
        target = float(np.median(self.self_score)) if self.self_score.shape[0] else 1.0
        factor = np.float32(target / norm2)
        self.classes = np.append(self.classes, np.int64(entry_id))
        self.w_dense = np.hstack([self.w_dense, (dense * factor)[:, None]])
        self.w_sparse = np.hstack([self.w_sparse, (sparse * factor)[:, None]])
        self.bias = np.append(self.bias, np.float32(np.median(self.bias)))

    def drop(self, entry_id: int) -> None:
        keep = self.classes != entry_id
        if keep.all():
            return
        self.classes = self.classes[keep]
        self.w_dense = self.w_dense[:, keep]
        self.w_sparse = self.w_sparse[:, keep]
        self.bias = self.bias[keep]

    # ------------------------------------------------------------------ persistence

    def to_arrays(self) -> dict[str, np.ndarray]:
        terms = sorted(self.vocab, key=self.vocab.__getitem__)
        return {
            "classes": self.classes,
            "terms": np.array(terms, dtype=str),
            "idf": self.idf,
            "dense_scale": np.array([self.dense_scale], dtype=np.float64),
            "w_dense": self.w_dense,
            "w_sparse": self.w_sparse,
            "bias": self.bias,
            "self_score": self.self_score,
        }

    @classmethod
    def from_arrays(cls, data: dict[str, np.ndarray]) -> EntryClassifier:
        return cls(
            classes=np.asarray(data["classes"], dtype=np.int64),
            vocab={str(term): index for index, term in enumerate(data["terms"])},
            idf=np.asarray(data["idf"], dtype=np.float32),
            dense_scale=float(data["dense_scale"][0]),
            w_dense=np.asarray(data["w_dense"], dtype=np.float32),
            w_sparse=np.asarray(data["w_sparse"], dtype=np.float32),
            bias=np.asarray(data["bias"], dtype=np.float32),
            self_score=np.asarray(data["self_score"], dtype=np.float32),
        )


def _tfidf(terms: Sequence[Sequence[str]], vocab: dict[str, int], idf: np.ndarray) -> sp.csr_matrix:
    rows: list[int] = []
    cols: list[int] = []
    values: list[float] = []
    for row, doc in enumerate(terms):
        counts = Counter(term for term in doc if term in vocab)
        for term, count in counts.items():
            col = vocab[term]
            rows.append(row)
            cols.append(col)
            values.append((1.0 + math.log(count)) * float(idf[col]))
    matrix = sp.csr_matrix(
        (np.asarray(values, dtype=np.float32), (rows, cols)), shape=(len(terms), len(vocab)), dtype=np.float32
    )
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    return sp.csr_matrix(sp.diags(1.0 / norms) @ matrix, dtype=np.float32)


def train_classifier(
    terms: Sequence[Sequence[str]],
    vectors: np.ndarray,
    labels: np.ndarray,
    *,
    l2: float,
    dense_scale: float,
    max_iter: int,
    min_df: int = 1,
) -> EntryClassifier:
    """Fit the softmax classifier; ``labels`` are entry ids, one per training string."""
    classes, y = np.unique(np.asarray(labels, dtype=np.int64), return_inverse=True)
    n, n_classes = len(terms), classes.shape[0]
    frequency = Counter(term for doc in terms for term in set(doc))
    ordered = sorted(term for term, count in frequency.items() if count >= min_df)
    vocab = {term: index for index, term in enumerate(ordered)}
    idf = np.array([math.log((1 + n) / (1 + frequency[term])) + 1.0 for term in ordered], dtype=np.float32)
    x_sparse = _tfidf(terms, vocab, idf)
    x_sparse_t = sp.csr_matrix(x_sparse.T)
    x_dense = np.ascontiguousarray(vectors, dtype=np.float32) * np.float32(dense_scale)
    dim, n_terms = x_dense.shape[1], len(vocab)
    onehot = np.zeros((n, n_classes), dtype=np.float32)
    onehot[np.arange(n), y] = 1.0
    split_dense, split_sparse = dim * n_classes, (dim + n_terms) * n_classes

    def loss(params: np.ndarray) -> tuple[float, np.ndarray]:
        w_dense = params[:split_dense].reshape(dim, n_classes)
        w_sparse = params[split_dense:split_sparse].reshape(n_terms, n_classes)
        bias = params[split_sparse:]
        logits = x_dense @ w_dense + x_sparse @ w_sparse + bias
        logits -= logits.max(axis=1, keepdims=True)
        prob = np.exp(logits)
        prob /= prob.sum(axis=1, keepdims=True)
        value = -float(np.log(prob[np.arange(n), y] + 1e-12).mean())
        value += 0.5 * l2 * float(params[:split_sparse] @ params[:split_sparse])
        delta = (prob - onehot) / n
        grad = np.concatenate(
            [
                (x_dense.T @ delta + l2 * w_dense).ravel(),
                (x_sparse_t @ delta + l2 * w_sparse).ravel(),
                delta.sum(axis=0),
            ]
        )
        return value, grad.astype(np.float32)

    params = _lbfgs(loss, np.zeros(split_sparse + n_classes, dtype=np.float32), max_iter)
    model = EntryClassifier(
        classes=classes,
        vocab=vocab,
        idf=idf,
        dense_scale=dense_scale,
        w_dense=np.ascontiguousarray(params[:split_dense].reshape(dim, n_classes), dtype=np.float32),
        w_sparse=np.ascontiguousarray(params[split_dense:split_sparse].reshape(n_terms, n_classes), dtype=np.float32),
        bias=params[split_sparse:].astype(np.float32),
    )
    own = model.logits(terms, vectors) - model.bias
    model.self_score = np.array([float(own[y == index, index].mean()) for index in range(n_classes)], dtype=np.float32)
    return model
