"""Tokenisers and an incremental BM25 inverted index stored in sparse (CSC-style) arrays."""

from __future__ import annotations

import itertools
import logging
import math
import re
import threading
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

_TOKEN_SPLIT = re.compile(r"[a-z0-9.]+|[^a-z0-9. ]+")
_LATIN = re.compile(r"[a-z0-9.]+")

# Function words and question scaffolding: they appear in nearly every question, so indexing
# them only adds noise to coverage features (BM25's IDF would mostly ignore them anyway).
_STOPWORD_TEXT = (
    "的 了 吗 呢 吧 啊 呀 哦 嘛 么 是 我 你 您 他 她 它 我们 你们 这 那 这个 那个 就 都 也 还 在 有 和 与 "
    "怎么 怎么样 怎么办 如何 什么 为什么 哪 哪里 哪儿 能 能不能 可以 可不可以 会 要 想 请问 一下 "
    "一个 个 吗 不 没 没有 请 帮 帮我 给 把 被 让 到 从 对 又 再 很 太 好 多少 几"
)
STOPWORDS = frozenset(_STOPWORD_TEXT.split(" "))


_TEMPLATE: list[Any] = []
_TEMPLATE_LOCK = threading.Lock()


def _jieba_template() -> Any:
    with _TEMPLATE_LOCK:
        if not _TEMPLATE:
            import jieba

            jieba.setLogLevel(logging.WARNING)
            template = jieba.Tokenizer()
            template.initialize()
            _TEMPLATE.append(template)
        return _TEMPLATE[0]


def jieba_frequencies() -> dict[str, int]:
    """Word frequencies of jieba's main dictionary (shared, read-only)."""
    return _jieba_template().FREQ  # type: ignore[no-any-return]


class Tokeniser:
    """Word, character-bigram and pinyin-bigram analysers over normalised text.

    Uses a private ``jieba.Tokenizer`` so the KB's user dictionary never leaks into (or is
    disturbed by) other code using jieba's global instance.
    """

    def __init__(self) -> None:
        import jieba

        self._jieba = jieba.Tokenizer()
        # Loading jieba's main dictionary takes ~0.7 s; copy it from one loaded template
        # instead (~30 ms), so rebuilds and tests do not pay it again.
        template = _jieba_template()
        self._jieba.FREQ = dict(template.FREQ)
        self._jieba.total = template.total
        self._jieba.initialized = True
        self._user_words: set[str] = set()
        self._pinyin_cache: dict[str, str] = {}

    def add_words(self, words: Iterable[str]) -> None:
        for word in words:
            word = word.strip()
            if len(word) < 2 or " " in word or word in self._user_words:
                continue
            self._user_words.add(word)
            # A high frequency makes jieba keep the KB term whole instead of splitting it.
            self._jieba.add_word(word, freq=max(2000, 500 * len(word)))

    @property
    def user_words(self) -> frozenset[str]:
        return frozenset(self._user_words)

    def words(self, text: str) -> list[str]:
        out: list[str] = []
        for chunk in text.split(" "):
            if not chunk:
                continue
            for token in self._jieba.lcut(chunk, HMM=True):
                token = token.strip()
                if token:
                    out.append(token)
        return out

    @staticmethod
    def char_ngrams(text: str) -> list[str]:
        """Chinese character bigrams (unigrams for one-character runs) plus whole Latin/number
        tokens. Bigrams survive most typos and segmentation errors that break whole words."""
        out: list[str] = []
        for chunk in _TOKEN_SPLIT.findall(text):
            if _LATIN.fullmatch(chunk):
                out.append(chunk)
                continue
            if len(chunk) == 1:
                out.append(chunk)
                continue
            out.extend(chunk[index : index + 2] for index in range(len(chunk) - 1))
        return out

    def syllable(self, char: str) -> str:
        cached = self._pinyin_cache.get(char)
        if cached is None:
            from pypinyin import Style, lazy_pinyin

            syllable = lazy_pinyin(char, style=Style.NORMAL)[0]
            cached = fuzzy_syllable(syllable) if syllable.isascii() else char
            self._pinyin_cache[char] = cached
        return cached

    def pinyin_ngrams(self, text: str) -> list[str]:
        """Bigrams of fuzzy toneless syllables, so homophone typos (报号/保号, 留量/流量) and
        common regional confusions (zh/z, n/l, in/ing) still match."""
        out: list[str] = []
        for chunk in _TOKEN_SPLIT.findall(text):
            if _LATIN.fullmatch(chunk):
                continue
            syllables = [self.syllable(char) for char in chunk]
            if len(syllables) == 1:
                out.append(syllables[0])
                continue
            out.extend(f"{a}_{b}" for a, b in itertools.pairwise(syllables))
        return out


def fuzzy_syllable(syllable: str) -> str:
    for retroflex in ("zh", "ch", "sh"):
        if syllable.startswith(retroflex):
            syllable = retroflex[0] + syllable[2:]
            break
    if syllable.startswith("l"):
        syllable = "n" + syllable[1:]
    elif syllable.startswith("f"):
        syllable = "h" + syllable[1:]
    if syllable.endswith("ng") and len(syllable) > 2 and syllable[-3] in "ie":
        syllable = syllable[:-1]
    return syllable


@dataclass
class _Segment:
    indptr: np.ndarray  # (n_terms_at_creation + 1,) int64
    rows: np.ndarray  # global row ids, int32 (halves memory at 100k entries)
    weights: np.ndarray  # BM25 term weights without IDF, float32


# Posting lists already looked up during one query, by term column.
Postings = dict[int, tuple[np.ndarray, np.ndarray]]


class Vocabulary:
    """Term -> column, keyed by the term's hash; the strings themselves are not kept.

    A full build's terms are one sorted array of hashes (the column is the position); terms first
    seen in live edits get the next columns through a small dict. A dict of strings cost ~180 MB
    for the 1.2M terms of a 100k-entry KB, and its long-lived keys, allocated among the
    tokeniser's temporaries, kept the heap from shrinking after the build. Python's string hash
    is 64 bits (a collision among a million terms has odds of ~1e-7) and differs between
    processes, which is fine: lexical legs are rebuilt in every process, never saved.
    """

    def __init__(self, keys: np.ndarray | None = None) -> None:
        self._keys = np.zeros(0, dtype=np.int64) if keys is None else keys
        self._live: dict[int, int] = {}

    def __len__(self) -> int:
        return self._keys.shape[0] + len(self._live)

    def __contains__(self, term: object) -> bool:
        return isinstance(term, str) and self.get(term) is not None

    def get(self, term: str) -> int | None:
        key = hash(term)
        return self._find(key, int(np.searchsorted(self._keys, key)))

    def _find(self, key: int, position: int) -> int | None:
        """The column of ``key``, given where it would sit in the sorted bulk keys."""
        if position < self._keys.shape[0] and int(self._keys[position]) == key:
            return position
        return self._live.get(key)

    def columns(self, terms: Sequence[str]) -> list[int | None]:
        """:meth:`get` for many terms with one array search."""
        if not terms:
            return []
        keys = np.fromiter((hash(term) for term in terms), dtype=np.int64, count=len(terms))
        positions = np.searchsorted(self._keys, keys)
        return [self._find(key, position) for key, position in zip(keys.tolist(), positions.tolist(), strict=True)]

    def column(self, term: str) -> int:
        """The term's column, assigning the next one to a term never seen."""
        col = self.get(term)
        if col is None:
            col = len(self)
            self._live[hash(term)] = col
        return col


class SparseBM25:
    """BM25 over rows (strings or entries) kept as CSC segments: one large segment from the last
    full build plus small ones appended by live upserts.

    Removal only clears the row's ``alive`` flag. Document frequencies are counted at query time
    from the live rows of each posting list, so they stay exact under edits without keeping a
    second (row-major) copy of the matrix. Segments are compacted when small ones pile up.
    """

    def __init__(self, k1: float, b: float) -> None:
        self.k1 = k1
        self.b = b
        self.vocab = Vocabulary()
        self.segments: list[_Segment] = []
        self.alive = np.zeros(0, dtype=bool)
        self.avgdl = 1.0
        self.n_alive = 0

    def _ensure_rows(self, max_row: int) -> None:
        if max_row >= self.alive.shape[0]:
            grown = np.zeros(max(max_row + 1, 2 * self.alive.shape[0], 64), dtype=bool)
            grown[: self.alive.shape[0]] = self.alive
            self.alive = grown

    def _segment(self, rows: np.ndarray, local: np.ndarray, cols: np.ndarray, lengths: np.ndarray) -> _Segment:
        """CSC segment from COO term occurrences: ``local`` indexes ``rows``/``lengths``."""
        tf = sp.csc_matrix(
            (np.ones(local.shape[0], dtype=np.float32), (local, cols)),
            shape=(rows.shape[0], len(self.vocab)),
            dtype=np.float32,
        )
        tf.sum_duplicates()
        coo = tf.tocoo()
        weights = self._term_weights(coo.data, lengths[coo.row])
        csc = sp.csc_matrix((weights, (coo.row, coo.col)), shape=tf.shape, dtype=np.float32)
        csc.sort_indices()
        global_rows = rows.astype(np.int32)[csc.indices]
        return _Segment(csc.indptr.astype(np.int64), global_rows, csc.data.astype(np.float32))

    def _term_weights(self, tf: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """BM25's saturated, length-normalised term frequency (float32), one per posting."""
        tf = tf.astype(np.float32, copy=False)
        norm = self.k1 * (1.0 - self.b + self.b * np.maximum(lengths, 1).astype(np.float32) / self.avgdl)
        return tf * np.float32(self.k1 + 1.0) / (tf + norm)

    def builder(self) -> BulkBuilder:
        """Start a full build that takes documents one by one, holding only integer arrays."""
        self.vocab = Vocabulary()
        self.segments = []
        self.alive = np.zeros(0, dtype=bool)
        self.n_alive = 0
        return BulkBuilder(self)

    def build(self, rows: Sequence[int], docs: Sequence[Sequence[str]], avgdl: float | None = None) -> None:
        builder = self.builder()
        for row, doc in zip(rows, docs, strict=True):
            builder.add(row, doc)
        builder.finish(avgdl)

    def add(self, rows: Sequence[int], docs: Sequence[Sequence[str]]) -> None:
        if not rows:
            return
        local = [index for index, doc in enumerate(docs) for _ in doc]
        cols = [self.vocab.column(term) for doc in docs for term in doc]
        lengths = np.array([len(doc) for doc in docs], dtype=np.int32)
        self._append(np.asarray(rows, dtype=np.int64), np.asarray(local, dtype=np.int64), np.asarray(cols), lengths)

    def _append(self, rows: np.ndarray, local: np.ndarray, cols: np.ndarray, lengths: np.ndarray) -> None:
        if rows.shape[0] == 0:
            return
        self._ensure_rows(int(rows.max()))
        self.segments.append(self._segment(rows, local, cols.astype(np.int64), lengths))
        self.alive[rows] = True
        self.n_alive = int(self.alive.sum())
        if len(self.segments) > 12:
            self._compact_small()

    def remove(self, rows: Iterable[int]) -> None:
        indices = np.fromiter(rows, dtype=np.int64)
        indices = indices[indices < self.alive.shape[0]]
        self.alive[indices] = False
        self.n_alive = int(self.alive.sum())

    def _compact_small(self) -> None:
        # Keep the big first segment; fold the small live-update segments into one.
        head, tail = self.segments[0], self.segments[1:]
        n_terms = len(self.vocab)
        rows_list, cols_list, data_list = [], [], []
        for segment in tail:
            counts = np.diff(segment.indptr)
            cols = np.repeat(np.arange(counts.shape[0], dtype=np.int64), counts)
            keep = self.alive[segment.rows]
            rows_list.append(segment.rows[keep])
            cols_list.append(cols[keep])
            data_list.append(segment.weights[keep])
        rows = np.concatenate(rows_list)
        cols = np.concatenate(cols_list)
        data = np.concatenate(data_list)
        order = np.lexsort((rows, cols))
        counts = np.bincount(cols[order], minlength=n_terms)
        indptr = np.zeros(n_terms + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        self.segments = [head, _Segment(indptr, rows[order], data[order])]

    def _postings(self, col: int, memo: Postings | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Live rows holding term ``col`` and their weights. ``memo`` keeps them for the rest of
        one query: the coverage features ask again for every term the score looked up, and a
        common term's list is 100k rows long in a large KB."""
        if memo is not None and col in memo:
            return memo[col]
        found = self._live_postings(col)
        if memo is not None:
            memo[col] = found
        return found

    def _live_postings(self, col: int) -> tuple[np.ndarray, np.ndarray]:
        rows_parts, weight_parts = [], []
        for segment in self.segments:
            if col + 1 < segment.indptr.shape[0]:
                start, end = segment.indptr[col], segment.indptr[col + 1]
                if end > start:
                    rows_parts.append(segment.rows[start:end])
                    weight_parts.append(segment.weights[start:end])
        if not rows_parts:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        rows = np.concatenate(rows_parts) if len(rows_parts) > 1 else rows_parts[0]
        weights = np.concatenate(weight_parts) if len(weight_parts) > 1 else weight_parts[0]
        keep = self.alive[rows]
        return rows[keep], weights[keep]

    def idf(self, df: int) -> float:
        return math.log(1.0 + (self.n_alive - df + 0.5) / (df + 0.5))

    def query_terms(self, terms: Sequence[str]) -> tuple[dict[int, int], int]:
        """Query term frequencies by column, and how many of the terms the vocabulary lacks."""
        counts: dict[int, int] = {}
        unknown = 0
        for col in self.vocab.columns(terms):
            if col is None:
                unknown += 1
            else:
                counts[col] = counts.get(col, 0) + 1
        return counts, unknown

    def score(
        self, terms: Sequence[str], n_rows: int, memo: Postings | None = None
    ) -> tuple[np.ndarray, float, np.ndarray]:
        """Scores of all rows (dense array of ``n_rows``), the query's self-score (the BM25 score
        the query would get against itself, used to put scores on a 0..1-ish scale), and the
        live rows any term hit (with repeats). Those rows come from the postings: finding them
        again with a nonzero pass over every row cost ~3 ms per leg at 500k rows."""
        scores = np.zeros(n_rows, dtype=np.float32)
        counts, unknown = self.query_terms(terms)
        qlen = max(len(terms), 1)
        qnorm = self.k1 * (1.0 - self.b + self.b * qlen / self.avgdl)
        self_score = 0.0
        hit_parts: list[np.ndarray] = []
        # Terms the live index does not contain still belong to the question: count them as
        # rare words so a query about something the KB never mentions gets a low normalised
        # score. "Live" matters: a term left in the vocabulary by a removed entry counts too.
        for col, qtf in counts.items():
            rows, weights = self._postings(col, memo)
            if rows.shape[0] == 0:
                unknown += qtf
                continue
            idf = self.idf(rows.shape[0])
            # Repeating a term in the query counts with saturation, like in the document.
            qweight = qtf * (self.k1 + 1.0) / (qtf + qnorm)
            np.add.at(scores, rows, weights * np.float32(idf * qweight))
            hit_parts.append(rows)
            self_score += idf * qweight * qweight
        if unknown:
            single = (self.k1 + 1.0) / (1.0 + qnorm)
            self_score += unknown * self.idf(0) * single * single
        hits = np.concatenate(hit_parts) if hit_parts else np.zeros(0, dtype=np.int64)
        return scores, max(self_score, 1e-6), hits

    def has_live(self, term: str, memo: Postings | None = None) -> bool:
        col = self.vocab.get(term)
        return col is not None and self._postings(col, memo)[0].shape[0] > 0

    def contains(self, rows: np.ndarray, cols: Iterable[int]) -> np.ndarray:
        """Boolean matrix (len(rows), len(cols)): does row contain term col."""
        cols = list(cols)
        out = np.zeros((rows.shape[0], len(cols)), dtype=bool)
        if rows.shape[0] == 0:
            return out
        position = {int(row): index for index, row in enumerate(rows)}
        for j, col in enumerate(cols):
            posting_rows, _ = self._postings(col)
            for row in posting_rows[np.isin(posting_rows, rows)]:
                out[position[int(row)], j] = True
        return out


@dataclass
class _Partial:
    """Term frequencies of one chunk of documents, by the chunk's own sorted term hashes."""

    keys: np.ndarray  # sorted term hashes, int64
    indptr: np.ndarray  # (len(keys) + 1,) int64
    rows: np.ndarray  # global row ids, int32
    tf: np.ndarray  # term frequency in the row, uint16


class BulkBuilder:
    """Collects documents for :meth:`SparseBM25.builder`.

    Term hashes are buffered for ``chunk`` tokens at a time and folded into per-chunk term
    frequencies; :meth:`finish` merges the chunks into one CSC segment. A 100k-entry KB has ~30M
    tokens: buffering them all as (row, column) pairs for four legs at once, then letting scipy
    copy them, was the largest transient of a rebuild (~450 MB).
    """

    def __init__(self, index: SparseBM25, chunk: int = 1 << 20) -> None:
        self._index = index
        self._chunk = chunk
        self._rows = array("q")
        self._lengths = array("i")
        self._hashes = array("q")
        self._chunk_start = 0  # first document of the buffered chunk
        self._partials: list[_Partial] = []

    def add(self, row: int, terms: Sequence[str]) -> None:
        self._rows.append(row)
        self._lengths.append(len(terms))
        self._hashes.extend(hash(term) for term in terms)
        if len(self._hashes) >= self._chunk:
            self._fold()

    def _fold(self) -> None:
        n_docs = len(self._rows) - self._chunk_start
        if n_docs == 0:
            return
        hashes = np.array(self._hashes, dtype=np.int64)
        self._hashes = array("q")
        lengths = np.frombuffer(self._lengths, dtype=np.int32)[self._chunk_start :]
        rows = np.frombuffer(self._rows, dtype=np.int64)[self._chunk_start :]
        self._chunk_start += n_docs
        if hashes.shape[0] == 0:
            return
        keys, cols = np.unique(hashes, return_inverse=True)
        del hashes
        # One sort key per (column, document) pair; runs of equal keys are a term frequency.
        pairs = cols.astype(np.int64) * n_docs + np.repeat(np.arange(n_docs, dtype=np.int64), lengths)
        del cols
        pairs.sort()
        first = np.flatnonzero(np.r_[True, pairs[1:] != pairs[:-1]])
        tf = np.diff(np.r_[first, pairs.shape[0]])
        pairs = pairs[first]
        indptr = np.zeros(keys.shape[0] + 1, dtype=np.int64)
        np.cumsum(np.bincount(pairs // n_docs, minlength=keys.shape[0]), out=indptr[1:])
        self._partials.append(
            _Partial(
                keys=keys,
                indptr=indptr,
                rows=rows[pairs % n_docs].astype(np.int32),
                tf=np.minimum(tf, np.iinfo(np.uint16).max).astype(np.uint16),
            )
        )

    def finish(self, avgdl: float | None = None) -> None:
        """``avgdl`` restores a saved index's length normalisation exactly (live edits do not
        move it, so it is not the current mean of a reloaded index)."""
        self._fold()
        index = self._index
        lengths = np.frombuffer(self._lengths, dtype=np.int32).copy()
        rows = np.frombuffer(self._rows, dtype=np.int64).copy()
        if avgdl is None:
            avgdl = float(lengths.mean()) if lengths.shape[0] and lengths.mean() > 0 else 1.0
        index.avgdl = avgdl
        self._rows, self._lengths = array("q"), array("i")
        partials, self._partials = self._partials, []
        keys = np.unique(np.concatenate([part.keys for part in partials])) if partials else np.zeros(0, np.int64)
        index.vocab = Vocabulary(keys)
        if rows.shape[0] == 0:
            return
        index._ensure_rows(int(rows.max()))
        length_of = np.zeros(index.alive.shape[0], dtype=np.int32)
        length_of[rows] = lengths
        del lengths
        columns = [np.searchsorted(keys, part.keys) for part in partials]
        counts = np.zeros(keys.shape[0], dtype=np.int64)
        for part, cols in zip(partials, columns, strict=True):
            counts[cols] += np.diff(part.indptr)
        indptr = np.zeros(keys.shape[0] + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        out_rows = np.empty(int(indptr[-1]), dtype=np.int32)
        out_weights = np.empty(int(indptr[-1]), dtype=np.float32)
        # Chunks in document order, each appended at its columns' cursors: rows stay ascending
        # within a column, as in a CSC matrix, without sorting all postings at once.
        cursor = indptr[:-1].copy()
        while partials:
            part, cols = partials.pop(0), columns.pop(0)
            counts = np.diff(part.indptr)
            target = np.repeat(cursor[cols] - part.indptr[:-1], counts) + np.arange(part.rows.shape[0])
            out_rows[target] = part.rows
            out_weights[target] = index._term_weights(part.tf, length_of[part.rows])
            cursor[cols] += counts
        index.segments = [_Segment(indptr, out_rows, out_weights)]
        index.alive[rows] = True
        index.n_alive = int(index.alive.sum())
