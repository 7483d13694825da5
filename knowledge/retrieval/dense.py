"""The dense leg: one vector per indexed question string in a FAISS ``IndexIDMap2``."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import faiss
import numpy as np


def uncentred_basis(sample: np.ndarray, dims: int) -> np.ndarray:
    """The ``dims`` leading right-singular vectors of ``sample`` itself, not of the centred
    sample: ``(dims, d)``, so that ``x @ basis.T`` keeps inner products.

    Sentence vectors of one domain share a large common direction (the demo KB's unit vectors
    average to a vector of norm 0.52). PCA removes that mean, and re-normalising what is left
    re-ranks the neighbours: FAISS's ``PCA128,L2norm`` kept the exact top-1 neighbour of only
    73 % of the dev queries (recall@10 0.77). The uncentred projection to 128 dimensions keeps
    84 % (recall@10 0.92), 256 dimensions 95 % (0.975).
    """
    # The Gram matrix a block at a time: a float64 copy of a 20k x 512 sample was 80 MB of
    # rebuild peak, three times over (questions, answer sentences, centroids).
    gram = np.zeros((sample.shape[1], sample.shape[1]), dtype=np.float64)
    for start in range(0, sample.shape[0], 2048):
        block = np.asarray(sample[start : start + 2048], dtype=np.float64)
        gram += block.T @ block
    values, vectors = np.linalg.eigh(gram)
    order = np.argsort(values)[::-1][:dims]
    return np.ascontiguousarray(vectors[:, order].T, dtype=np.float32)


class DenseIndex:
    """Exact inner product (``IndexFlatIP``) for small KBs; above ``exact_max_vectors`` the
    vectors are projected to ``pca_dim`` dimensions (:func:`uncentred_basis`) and kept in an
    ``IVF{nlist},SQ8`` index (8-bit codes), so 600k strings need ~80 MB instead of 1.2 GB.
    Either is wrapped by ``IndexIDMap2`` keyed by the engine's string ids.

    Removal: the flat index removes vectors for real. IVF inverted lists do not renumber on
    removal, which breaks ``IndexIDMap2``'s bookkeeping, so there removed ids are only filtered
    out of results (the caller's ``alive`` mask) and disappear at the next full rebuild.
    """

    def __init__(self, dim: int) -> None:
        # One OpenMP thread: a query is one vector, and concurrency comes from requests. With two
        # threads on a 2-core host, a flat search of 20k vectors took 7.9 ms instead of 1.2 ms
        # whenever the other core was busy (OpenMP's workers spin waiting for it).
        faiss.omp_set_num_threads(1)
        self.dim = dim
        self.index: faiss.IndexIDMap2 = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        self.exact = True

    @property
    def kind(self) -> str:
        return "flat" if self.exact else "projected-ivf-sq8"

    def build_from(
        self,
        ids: np.ndarray,
        vectors_at: Callable[[np.ndarray], np.ndarray],
        *,
        exact_max_vectors: int,
        pca_dim: int,
        nlist: int,
        nprobe: int,
        train_sample: int,
        seed: int,
        chunk: int = 8192,
    ) -> None:
        """Build from ``vectors_at(positions)``, the vectors of ``ids[positions]``, made a chunk at
        a time: the vectors (100k entry centroids: 200 MB in float32) are never all in memory."""
        n = ids.shape[0]
        sample = np.zeros((0, self.dim), dtype=np.float32)
        if n > exact_max_vectors:
            positions = np.arange(n)
            if n > train_sample:
                rng = np.random.default_rng(seed)
                positions = np.sort(rng.choice(n, size=train_sample, replace=False))
            sample = vectors_at(positions)
        self.reset(n, sample, exact_max_vectors=exact_max_vectors, pca_dim=pca_dim, nlist=nlist, nprobe=nprobe)
        del sample
        for start in range(0, n, chunk):
            positions = np.arange(start, min(n, start + chunk))
            self.add(ids[positions], vectors_at(positions))

    def reset(
        self, n_expected: int, sample: np.ndarray, *, exact_max_vectors: int, pca_dim: int, nlist: int, nprobe: int
    ) -> None:
        """Create an empty index sized for ``n_expected`` vectors; ``sample`` trains the
        compressed kind (it is ignored by the exact one). Vectors are then added in chunks."""
        if n_expected <= exact_max_vectors:
            self.exact = True
            self.index = faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))
            return
        self.exact = False
        n_train = sample.shape[0]
        # k-means wants ~39 points per list and PCA at least as many points as dimensions.
        lists = max(1, min(nlist or int(4 * math.sqrt(n_expected)), n_train // 39))
        reduced = max(1, min(pca_dim, self.dim, n_train))
        projection = faiss.LinearTransform(self.dim, reduced, False)
        faiss.copy_array_to_vector(uncentred_basis(sample, reduced).ravel(), projection.A)
        projection.is_trained = True
        compressed = faiss.index_factory(reduced, f"IVF{lists},SQ8", faiss.METRIC_INNER_PRODUCT)
        inner = faiss.IndexPreTransform(projection, compressed)
        inner.train(np.ascontiguousarray(sample, dtype=np.float32))
        faiss.extract_index_ivf(inner).nprobe = nprobe
        self.index = faiss.IndexIDMap2(inner)

    def set_nprobe(self, nprobe: int) -> None:
        if not self.exact:
            faiss.extract_index_ivf(self.index.index).nprobe = nprobe

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self.index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), np.asarray(ids, dtype=np.int64))

    def remove(self, ids: np.ndarray) -> None:
        if self.exact and ids.shape[0]:
            self.index.remove_ids(np.asarray(ids, dtype=np.int64))  # type: ignore[arg-type]

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        k = max(1, min(k, self.index.ntotal))
        if self.index.ntotal == 0:
            empty = np.zeros((vectors.shape[0], 0))
            return empty.astype(np.float32), empty.astype(np.int64)
        scores, ids = self.index.search(np.ascontiguousarray(vectors, dtype=np.float32), k)
        return scores, ids

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        return np.vstack([self.index.reconstruct(int(i)) for i in ids]).astype(np.float32)

    def save(self, path: Path) -> None:
        faiss.write_index(self.index, str(path))

    @classmethod
    def load(cls, path: Path, dim: int) -> DenseIndex:
        loaded = faiss.read_index(str(path))
        # read_index already returns the concrete class. Re-wrapping it with downcast_index would
        # create a second proxy while the owning one is garbage-collected, freeing the index.
        if not isinstance(loaded, faiss.IndexIDMap2):
            raise ValueError(f"{path} does not hold an IndexIDMap2")
        if loaded.d != dim:
            raise ValueError(f"{path} holds {loaded.d}-d vectors, expected {dim}")
        dense = cls(dim)
        dense.index = loaded
        dense.exact = isinstance(faiss.downcast_index(loaded.index), faiss.IndexFlat)
        return dense

    def __len__(self) -> int:
        return int(self.index.ntotal)
