"""Learned fusion of the retrieval legs into one calibrated confidence.

Stage 1 is a pointwise logistic regression over per-candidate features (leg scores, their
margins to the best other candidate, ranks, query-term coverage, query-level signals); it ranks
the candidate pool. Stage 2 maps a candidate's stage-1 logit, its logit margin to the best
other candidate and how many legs rank it first to P(this entry is the right answer).

Both are fitted at ``rebuild()`` on queries generated from the KB itself (see
``HybridIndex._train``): leave-one-paraphrase-out positives and leave-one-entry-out negatives.
Nothing here depends on a particular operator's KB or on evaluation queries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import minimize

LEGS: tuple[str, ...] = ("dense", "words", "chars", "pinyin", "answer", "answer_dense", "centroid", "classifier")
FEATURES: tuple[str, ...] = (
    *(f"{leg}_{kind}" for leg in LEGS for kind in ("score", "gap", "rr")),
    "coverage_words",
    "coverage_chars",
    "query_len",
    "unknown_share",
    "exact_match",
)
CALIBRATION_FEATURES: tuple[str, ...] = (
    "logit",
    "logit_gap",
    "legs_first",
    "centroid_score",
    "coverage_words",
    "coverage_chars",
    "classifier_score",
    "exact_match",
)


@dataclass
class Logistic:
    """L2-regularised logistic regression on standardised features."""

    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: float

    def logit(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mean) / self.scale) @ self.weights + self.bias

    def proba(self, x: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-np.clip(self.logit(x), -30.0, 30.0)))

    @classmethod
    def fit(cls, x: np.ndarray, y: np.ndarray, l2: float) -> Logistic:
        mean = x.mean(axis=0)
        scale = x.std(axis=0)
        scale[scale < 1e-6] = 1.0
        z = (x - mean) / scale
        n, d = z.shape

        def loss(params: np.ndarray) -> tuple[float, np.ndarray]:
            w, b = params[:d], params[d]
            margin = z @ w + b
            # log(1 + exp(m)) - y m, computed stably.
            value = np.logaddexp(0.0, margin) - y * margin
            p = 1.0 / (1.0 + np.exp(-margin))
            grad_margin = (p - y) / n
            grad = np.concatenate([z.T @ grad_margin + l2 * w / n, [grad_margin.sum()]])
            return float(value.mean() + 0.5 * l2 * float(w @ w) / n), grad

        result = minimize(loss, np.zeros(d + 1), jac=True, method="L-BFGS-B")
        return cls(mean, scale, result.x[:d].copy(), float(result.x[d]))

    @classmethod
    def fit_listwise(cls, x: np.ndarray, y: np.ndarray, group: np.ndarray, l2: float) -> Logistic:
        """Conditional logit: maximise softmax probability of the right candidate within each
        query's pool. Optimises the ranking directly; queries without a right candidate in
        the pool carry no ranking information and are skipped. The bias is left at 0 (it
        cancels within a query); the calibrator turns logits into probabilities."""
        mean = x.mean(axis=0)
        scale = x.std(axis=0)
        scale[scale < 1e-6] = 1.0
        useful = np.isin(group, np.unique(group[y > 0]))
        # Standardised in place on the one copy the selection makes (at 100k entries the
        # training matrix is ~50 MB, and each extra copy is rebuild peak).
        z = x[useful]
        z -= mean
        z /= scale
        y, group = y[useful], group[useful]
        _, group = np.unique(group, return_inverse=True)
        n_groups = int(group.max()) + 1 if group.shape[0] else 0
        d = z.shape[1]
        if n_groups == 0:
            return cls(mean, scale, np.zeros(d), 0.0)

        def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
            logits = z @ w
            peak = np.full(n_groups, -np.inf)
            np.maximum.at(peak, group, logits)
            exp = np.exp(logits - peak[group])
            total = np.bincount(group, weights=exp, minlength=n_groups)
            log_norm = np.log(total) + peak
            value = float(log_norm.sum() - (logits * y).sum()) / n_groups
            prob = exp / total[group]
            grad = (z.T @ (prob - y)) / n_groups
            return value + 0.5 * l2 * float(w @ w) / n_groups, grad + l2 * w / n_groups

        result = minimize(loss, np.zeros(d), jac=True, method="L-BFGS-B")
        return cls(mean, scale, result.x.copy(), 0.0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "weights": self.weights.tolist(),
            "bias": self.bias,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Logistic:
        return cls(
            np.asarray(data["mean"], dtype=np.float64),
            np.asarray(data["scale"], dtype=np.float64),
            np.asarray(data["weights"], dtype=np.float64),
            float(data["bias"]),
        )


def _prior_ranker() -> Logistic:
    # Used only before the first rebuild() has anything to learn from (e.g. an empty index):
    # a plain average of the normalised leg scores plus coverage; an indexed string typed
    # verbatim wins outright.
    weights = np.zeros(len(FEATURES))
    for index, name in enumerate(FEATURES):
        if name.endswith("_score") or name.startswith("coverage"):
            weights[index] = 1.0
    weights[FEATURES.index("exact_match")] = 5.0
    return Logistic(np.zeros(len(FEATURES)), np.ones(len(FEATURES)), weights, -3.0)


def _prior_calibrator() -> Logistic:
    size = len(CALIBRATION_FEATURES)
    return Logistic(np.zeros(size), np.ones(size), np.array([1.0, 1.0, 0.5, 0, 0, 0, 0, 2.0]), 0.0)


@dataclass
class FusionModel:
    ranker: Logistic = field(default_factory=_prior_ranker)
    calibrator: Logistic = field(default_factory=_prior_calibrator)
    trained_on: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "features": list(FEATURES),
            "calibration_features": list(CALIBRATION_FEATURES),
            "ranker": self.ranker.to_dict(),
            "calibrator": self.calibrator.to_dict(),
            "trained_on": self.trained_on,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FusionModel:
        if (
            tuple(data.get("features", ())) != FEATURES
            or tuple(data.get("calibration_features", ())) != CALIBRATION_FEATURES
        ):
            # A saved model from another feature layout cannot be reused.
            return cls()
        return cls(
            Logistic.from_dict(data["ranker"]),
            Logistic.from_dict(data["calibrator"]),
            {key: int(value) for key, value in data.get("trained_on", {}).items()},
        )


def calibration_inputs(logits: np.ndarray, legs_first: np.ndarray, features: np.ndarray) -> np.ndarray:
    """Per candidate: its logit, the margin to the best *other* candidate, the share of legs
    ranking it first, and absolute evidence (centroid similarity, query coverage) so that a
    clear winner among weak candidates is not mistaken for a good match."""
    if logits.shape[0] == 0:
        return np.zeros((0, len(CALIBRATION_FEATURES)))
    order = np.argsort(-logits)
    best = logits[order[0]]
    second = logits[order[1]] if logits.shape[0] > 1 else best - 10.0
    gap = np.where(np.arange(logits.shape[0]) == order[0], best - second, logits - best)
    absolute = [FEATURES.index(name) for name in CALIBRATION_FEATURES[3:]]
    return np.column_stack([logits, gap, legs_first, features[:, absolute]])
