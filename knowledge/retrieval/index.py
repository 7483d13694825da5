"""HybridIndex: lexical (BM25 words, character bigrams, pinyin, answers) + dense (FAISS) retrieval
fused by a model learned from the KB itself into one calibrated confidence and three tiers."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
import threading
from array import array
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, SupportsIndex, overload

import numpy as np

from knowledge.retrieval.classifier import EntryClassifier, char_grams, train_classifier
from knowledge.retrieval.config import RetrievalConfig
from knowledge.retrieval.dense import DenseIndex
from knowledge.retrieval.embedders import Embedder
from knowledge.retrieval.entries import Hit, IndexedEntry, SearchOutcome, Tier
from knowledge.retrieval.fusion import (
    FEATURES,
    LEGS,
    FusionModel,
    Logistic,
    calibration_inputs,
)
from knowledge.retrieval.lexical import STOPWORDS, Postings, SparseBM25, Tokeniser
from knowledge.retrieval.normalise import Normaliser

# Saved indexes of another format are not loaded (LiveIndex rebuilds them at start-up). Bumped whenever
# the same entries would be indexed differently, not only when the files change: 3 added homophone
# typo correction to normalisation, 4 the uncentred projection of the compressed FAISS layout, 5 the
# KB words that lost a pinyin collision in the saved vocabulary (a reload "corrected" them).
_FORMAT = 5

# Strings encoded per batch during rebuild: bounds the memory of the streamed dense build.
_EMBED_CHUNK = 4096
_SENTENCE = re.compile(r"[。；;！!？?\n]|(?:^|[：:，,\s])\d[.、]")
_QUOTED = re.compile(r"[\"“「『]([^\"”」』]{2,12})[\"”」』]")
_FEATURE_INDEX = {name: index for index, name in enumerate(FEATURES)}
# Politeness and particles around a question do not change which entry it asks for, so a query
# that is an indexed string up to these still counts as an exact match.
_LEADING_FILLER = re.compile(
    r"^(?:你好|您好|请问一下|请问|我想问一下|我想问下|想问一下|问一下|问下|麻烦问一下|麻烦问下|麻烦|那个|"
    r"我想知道|想知道|帮我看看|帮我看下|帮我查一下|帮我查下)+"
)
_TRAILING_FILLER = re.compile(r"(?:[吗呢啊呀吧哦嘛啦哈么]|谢谢)+$")


def skeleton(text: str) -> str:
    """Key of the exact-match evidence: normalised text without spaces and filler words."""
    compact = text.replace(" ", "")
    stripped = _TRAILING_FILLER.sub("", _LEADING_FILLER.sub("", compact))
    return stripped or compact


def _timestamp(value: datetime | None, default: float) -> float:
    return default if value is None else value.timestamp()


def entry_digest(entry: IndexedEntry) -> str:
    payload = [
        entry.id,
        entry.external_id,
        entry.category,
        entry.title,
        list(entry.similar),
        entry.answer,
        list(entry.tags),
        entry.audience,
        entry.valid_from.astimezone(UTC).isoformat() if entry.valid_from else None,
        entry.valid_to.astimezone(UTC).isoformat() if entry.valid_to else None,
    ]
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def combine_digests(digests: Iterable[tuple[int, str]]) -> str:
    """SHA-256 over (id, entry digest) pairs in id order: the index's checksum."""
    hasher = hashlib.sha256()
    for entry_id, digest in sorted(digests):
        hasher.update(f"{entry_id}:{digest}\n".encode())
    return hasher.hexdigest()


def entries_checksum(entries: Iterable[IndexedEntry]) -> str:
    """The checksum an index holding exactly these entries reports."""
    return combine_digests((entry.id, entry_digest(entry)) for entry in entries)


def _entry_to_json(entry: IndexedEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "external_id": entry.external_id,
        "category": entry.category,
        "title": entry.title,
        "similar": list(entry.similar),
        "answer": entry.answer,
        "tags": list(entry.tags),
        "audience": entry.audience,
        "valid_from": entry.valid_from.isoformat() if entry.valid_from else None,
        "valid_to": entry.valid_to.isoformat() if entry.valid_to else None,
    }


def _entry_from_json(data: dict[str, Any]) -> IndexedEntry:
    return IndexedEntry(
        id=int(data["id"]),
        external_id=data["external_id"],
        category=data["category"],
        title=data["title"],
        similar=tuple(data["similar"]),
        answer=data["answer"],
        tags=tuple(data["tags"]),
        audience=data["audience"],
        valid_from=datetime.fromisoformat(data["valid_from"]) if data["valid_from"] else None,
        valid_to=datetime.fromisoformat(data["valid_to"]) if data["valid_to"] else None,
    )


def _grow(array: np.ndarray, size: int, fill: Any) -> np.ndarray:
    if size <= array.shape[0]:
        return array
    grown = np.full(max(size, 2 * array.shape[0], 64), fill, dtype=array.dtype)
    grown[: array.shape[0]] = array
    return grown


def _compact(rows: Sequence[int]) -> Sequence[int]:
    """A range when the rows are contiguous and ascending, else a list."""
    if isinstance(rows, range):
        return rows
    if rows and all(b == a + 1 for a, b in itertools.pairwise(rows)):
        return range(rows[0], rows[-1] + 1)
    return list(rows)


def _homophones(state: _State) -> dict[str, list[str]]:
    """Characters of the KB grouped by fuzzy pinyin syllable."""
    groups: dict[str, set[str]] = {}
    texts = state.texts()
    for row in range(min(state.n_rows, len(texts))):
        for char in texts[row]:
            if "\u4e00" <= char <= "\u9fff":
                groups.setdefault(state.tokeniser.syllable(char), set()).add(char)
    out: dict[str, list[str]] = {}
    for members in groups.values():
        if len(members) > 1:
            ordered = sorted(members)
            for char in ordered:
                out[char] = [other for other in ordered if other != char]
    return out


def _corrupt(text: str, homophones: dict[str, list[str]], rng: np.random.Generator) -> str:
    positions = [index for index, char in enumerate(text) if char in homophones]
    if positions and rng.random() < 0.7:
        index = positions[int(rng.integers(len(positions)))]
        choices = homophones[text[index]]
        return text[:index] + choices[int(rng.integers(len(choices)))] + text[index + 1 :]
    index = int(rng.integers(len(text)))
    return text[:index] + text[index + 1 :]


def _normalise_rows(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(vectors / norms, dtype=np.float32)


def _centroids(groups: Sequence[np.ndarray]) -> np.ndarray:
    if not groups:
        return np.zeros((0, 0), dtype=np.float32)
    return _normalise_rows(np.vstack([group.mean(axis=0) for group in groups]).astype(np.float32))


def _group_max(
    n_slots: int, ids: np.ndarray, scores: np.ndarray, alive: np.ndarray, slot_of: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Entry score = best of its vectors among the neighbours FAISS returned; and those entries."""
    out = np.full(n_slots, -1.0, dtype=np.float32)
    keep = (ids >= 0) & (ids < alive.shape[0])
    ids, scores = ids[keep], scores[keep]
    keep = alive[ids]
    ids, scores = ids[keep], scores[keep].astype(np.float32)
    if ids.shape[0] == 0:
        out[:] = 0.0
        return out, np.zeros(0, dtype=np.int64)
    slots = slot_of[ids]
    np.maximum.at(out, slots, scores)
    # Entries beyond the neighbour list are at most as similar as the last neighbour.
    out[out < -0.5] = float(scores.min())
    return out, _distinct(slots, n_slots)


def _distinct(values: np.ndarray, size: int) -> np.ndarray:
    """Sorted distinct values of ``values`` (all in ``0..size-1``): marks in a scratch array, which
    is linear where ``np.unique`` sorts (a common word hits 100k rows of a large KB)."""
    if values.shape[0] < 4096:
        return np.unique(values).astype(np.int64)
    marks = np.zeros(size, dtype=bool)
    marks[values] = True
    return np.flatnonzero(marks)


class _ExactKeys:
    """skeleton(text) -> question rows, under 64-bit hashes: one sorted array from the last full
    build plus a dict for rows added live (a dict of strings to sets cost ~370 bytes a row, 185 MB at
    100k entries). Rows are never removed here: callers keep only live rows."""

    def __init__(self) -> None:
        self._keys = np.zeros(0, dtype=np.uint64)
        self._rows = np.zeros(0, dtype=np.int64)
        self._pending_keys = array("Q")
        self._pending_rows = array("q")
        self._live: dict[int, list[int]] = {}

    @staticmethod
    def key(text: str) -> int:
        return int.from_bytes(hashlib.blake2b(skeleton(text).encode("utf-8"), digest_size=8).digest(), "little")

    def extend(self, rows: Iterable[int], texts: Iterable[str]) -> None:
        """Bulk load: collected, then sorted in by :meth:`freeze`."""
        for row, text in zip(rows, texts, strict=True):
            self._pending_keys.append(self.key(text))
            self._pending_rows.append(row)

    def freeze(self) -> None:
        keys = np.concatenate([self._keys, np.frombuffer(self._pending_keys, dtype=np.uint64)])
        rows = np.concatenate([self._rows, np.frombuffer(self._pending_rows, dtype=np.int64)])
        order = np.argsort(keys, kind="stable")
        self._keys, self._rows = keys[order], rows[order]
        self._pending_keys, self._pending_rows = array("Q"), array("q")

    def add(self, row: int, text: str) -> None:
        self._live.setdefault(self.key(text), []).append(row)

    def rows(self, text: str) -> list[int]:
        key = self.key(text)
        target = np.uint64(key)
        start = int(np.searchsorted(self._keys, target, side="left"))
        end = int(np.searchsorted(self._keys, target, side="right"))
        return [*self._rows[start:end].tolist(), *self._live.get(key, ())]


class _Texts(Sequence[str]):
    """Strings by row in one UTF-8 buffer with offsets. A list of 500k short ``str`` objects held
    ~60 MB through a 100k-entry rebuild (3-4x the UTF-8 size), allocated among the tokeniser's
    temporaries so that freeing them did not shrink the heap; the buffer is two arrays."""

    def __init__(self) -> None:
        self._data = bytearray()
        self._start = array("q")
        self._end = array("q")

    def __len__(self) -> int:
        return len(self._start)

    @overload
    def __getitem__(self, row: SupportsIndex) -> str: ...

    @overload
    def __getitem__(self, row: slice) -> list[str]: ...

    def __getitem__(self, row: SupportsIndex | slice) -> str | list[str]:
        if isinstance(row, slice):
            return [self[index] for index in range(*row.indices(len(self)))]
        return self._data[self._start[row] : self._end[row]].decode("utf-8")

    def set(self, row: int, text: str) -> None:
        if row >= len(self._start):
            missing = row + 1 - len(self._start)
            self._start.extend([0] * missing)
            self._end.extend([0] * missing)
        start = len(self._data)
        self._data += text.encode("utf-8")
        self._start[row], self._end[row] = start, len(self._data)


@dataclass
class _Prepared:
    """An entry's normalised and tokenised text, computed outside the index lock."""

    entry: IndexedEntry
    texts: list[str]  # normalised question strings (empty ones dropped)
    words: list[list[str]]
    chars: list[list[str]]
    pinyin: list[list[str]]
    answer_words: list[str]
    segments: list[str]  # normalised answer sentences for the dense answer leg
    vectors: np.ndarray | None = None
    segment_vectors: np.ndarray | None = None


@dataclass
class _Candidates:
    slots: np.ndarray
    features: np.ndarray
    legs_first: np.ndarray
    legs: dict[str, np.ndarray] = field(default_factory=dict)


class _State:
    """Everything one generation of the index needs; rebuild() makes a new one and swaps it in."""

    def __init__(self, config: RetrievalConfig, dim: int, normaliser: Normaliser) -> None:
        self.normaliser = normaliser
        self.max_segments = config.answer_segments
        self.tokeniser = Tokeniser()
        self.entries: dict[int, IndexedEntry] = {}
        self.slot_of: dict[int, int] = {}
        # Rows of an entry, as a range when contiguous (always, unless loaded otherwise): a list of
        # ints costs ~240 bytes an entry more, 48 MB for rows and segments at 100k entries.
        self.rows_of: dict[int, Sequence[int]] = {}
        self.digests: dict[int, str] = {}
        self.slot_id = np.zeros(0, dtype=np.int64)
        self.slot_alive = np.zeros(0, dtype=bool)
        self.slot_agent_only = np.zeros(0, dtype=bool)
        self.slot_from = np.zeros(0, dtype=np.float64)
        self.slot_to = np.zeros(0, dtype=np.float64)
        self.n_slots = 0
        self.row_slot = np.zeros(0, dtype=np.int32)
        self.row_alive = np.zeros(0, dtype=bool)
        # Question and answer-sentence texts are needed to embed and train at rebuild() only;
        # released afterwards (None), they would be ~110 MB at 100k entries.
        self.row_text: _Texts | None = _Texts()
        self.n_rows = 0
        self.words = SparseBM25(config.bm25_k1, config.bm25_b)
        self.chars = SparseBM25(config.bm25_k1, config.bm25_b)
        self.pinyin = SparseBM25(config.bm25_k1, config.bm25_b)
        # Answers, tags and category, one document per slot: evidence such as SMS codes that
        # only the answer mentions.
        self.answer = SparseBM25(config.bm25_k1, config.bm25_b)
        self.dense = DenseIndex(dim)
        # Dense answer leg: one vector per answer sentence, ids are "segment rows".
        self.segment_dense = DenseIndex(dim)
        # Centroid leg: the normalised mean of an entry's question vectors, keyed by the entry's
        # first question row (rows are persisted, slots are not); a prototype of the entry that
        # is less swayed by one oddly similar paraphrase.
        self.centroid_dense = DenseIndex(dim)
        self.segments_of: dict[int, Sequence[int]] = {}
        # skeleton(text) -> question rows with that text: exact-match evidence.
        self.exact_keys = _ExactKeys()
        self.classifier: EntryClassifier | None = None
        # Slot of each classifier class (-1: entry gone).
        self.class_slots = np.zeros(0, dtype=np.int64)
        self.segment_slot = np.zeros(0, dtype=np.int32)
        self.segment_alive = np.zeros(0, dtype=bool)
        self.segment_text: _Texts | None = _Texts()
        self.n_segments = 0
        self.fusion = FusionModel()

    def restore_vocabulary(self, user_words: Sequence[str], pinyin_words: Sequence[str]) -> None:
        self.tokeniser.add_words(user_words)
        self.normaliser.add_pinyin_vocabulary(pinyin_words)

    def vocabulary(self, entries: Sequence[IndexedEntry]) -> None:
        """KB-derived user dictionary for jieba and pinyin look-up: synonym targets, tags,
        quoted UI terms and SMS codes from answers, and the categories' words."""
        base = self.normaliser
        words: list[str] = [canonical for _, canonical in base.synonyms]
        for entry in entries:
            words.extend(base.normalise(tag) for tag in entry.tags)
            words.extend(base.normalise(term) for term in _QUOTED.findall(entry.answer))
            words.extend(base.normalise(part) for part in re.split(r"[与及和/、]", entry.category))
        words = [word for word in words if 2 <= len(word) <= 12 and " " not in word]
        self.tokeniser.add_words(words)
        # Distinct words only, as they come: 100k titles hold ~900k words, and that list of
        # fresh strings left ~60 MB of fragmented heap behind it.
        title_words: dict[str, None] = {}
        for entry in entries:
            title_words.update(dict.fromkeys(self.tokeniser.words(base.normalise(entry.title))))
        self.normaliser.add_pinyin_vocabulary([*words, *title_words])

    def prepare(self, entry: IndexedEntry) -> _Prepared:
        texts = [self.normaliser.normalise(text) for text in entry.questions()]
        texts = [text for text in texts if text]
        if not texts:
            raise ValueError(f"entry {entry.external_id} has no searchable title or question")
        answer_text = " ".join([entry.answer, *entry.tags, entry.category])
        answer_norm = self.normaliser.normalise(answer_text)
        segments: list[str] = []
        for part in _SENTENCE.split(entry.answer):
            text = self.normaliser.normalise(part)
            if len(text) >= 6 and text not in segments:
                segments.append(text)
        return _Prepared(
            entry=entry,
            texts=texts,
            segments=segments[: self.max_segments] or [answer_norm[:200] or texts[0]],
            words=[self.tokeniser.words(text) for text in texts],
            chars=[self.tokeniser.char_ngrams(text) for text in texts],
            pinyin=[self.tokeniser.pinyin_ngrams(text) for text in texts],
            answer_words=self.tokeniser.words(answer_norm),
        )

    def _new_slot(self, entry: IndexedEntry) -> int:
        slot = self.n_slots
        self.n_slots += 1
        self.slot_id = _grow(self.slot_id, self.n_slots, -1)
        self.slot_alive = _grow(self.slot_alive, self.n_slots, False)
        self.slot_agent_only = _grow(self.slot_agent_only, self.n_slots, False)
        self.slot_from = _grow(self.slot_from, self.n_slots, -math.inf)
        self.slot_to = _grow(self.slot_to, self.n_slots, math.inf)
        self.slot_id[slot] = entry.id
        self.slot_alive[slot] = True
        self.slot_agent_only[slot] = entry.agent_only
        self.slot_from[slot] = _timestamp(entry.valid_from, -math.inf)
        self.slot_to[slot] = _timestamp(entry.valid_to, math.inf)
        self.slot_of[entry.id] = slot
        self.entries[entry.id] = entry
        self.digests[entry.id] = entry_digest(entry)
        return slot

    def _new_rows(self, slot: int, texts: list[str], rows: Sequence[int] | None, *, bulk: bool) -> Sequence[int]:
        rows = _compact(range(self.n_rows, self.n_rows + len(texts)) if rows is None else rows)
        top = max(rows) + 1
        self.n_rows = max(self.n_rows, top)
        self.row_slot = _grow(self.row_slot, self.n_rows, -1)
        self.row_alive = _grow(self.row_alive, self.n_rows, False)
        positions = np.asarray(rows, dtype=np.int64)
        self.row_slot[positions] = slot
        self.row_alive[positions] = True
        if self.row_text is not None:
            for row, text in zip(rows, texts, strict=True):
                self.row_text.set(row, text)
        if bulk:
            self.exact_keys.extend(rows, texts)
        else:
            for row, text in zip(rows, texts, strict=True):
                self.exact_keys.add(row, text)
        return rows

    def _new_segments(self, slot: int, texts: list[str], rows: Sequence[int] | None) -> Sequence[int]:
        rows = _compact(range(self.n_segments, self.n_segments + len(texts)) if rows is None else rows)
        self.n_segments = max(self.n_segments, max(rows) + 1)
        self.segment_slot = _grow(self.segment_slot, self.n_segments, -1)
        self.segment_alive = _grow(self.segment_alive, self.n_segments, False)
        positions = np.asarray(rows, dtype=np.int64)
        self.segment_slot[positions] = slot
        self.segment_alive[positions] = True
        if self.segment_text is not None:
            for row, text in zip(rows, texts, strict=True):
                self.segment_text.set(row, text)
        return rows

    def texts(self, *, segments: bool = False) -> _Texts:
        """Question (or answer-sentence) texts by row, while a rebuild still holds them."""
        texts = self.segment_text if segments else self.row_text
        if texts is None:
            raise RuntimeError("texts were released after the build")
        return texts

    def release_texts(self) -> None:
        """Embedding and training are done: the strings are no longer needed."""
        self.row_text = None
        self.segment_text = None

    def add_bulk(
        self,
        prepared: Iterable[_Prepared],
        rows: Sequence[list[int]] | None,
        segment_rows: Sequence[list[int]] | None,
        avgdl: dict[str, float] | None = None,
    ) -> None:
        """Initial load of many entries, consumed one at a time: tokens go straight into the
        lexical legs' integer builders, so a 100k-entry build never holds all token lists."""
        builders = {name: leg.builder() for name, leg in self.lexical_legs().items()}
        for index, item in enumerate(prepared):
            slot = self._new_slot(item.entry)
            entry_rows = self._new_rows(slot, item.texts, None if rows is None else rows[index], bulk=True)
            self.rows_of[item.entry.id] = entry_rows
            self.segments_of[item.entry.id] = self._new_segments(
                slot, item.segments, None if segment_rows is None else segment_rows[index]
            )
            for row, words, chars, pinyin in zip(entry_rows, item.words, item.chars, item.pinyin, strict=True):
                builders["words"].add(row, words)
                builders["chars"].add(row, chars)
                builders["pinyin"].add(row, pinyin)
            builders["answer"].add(slot, item.answer_words)
        saved = avgdl or {}
        for name, builder in builders.items():
            builder.finish(saved.get(name))
        self.exact_keys.freeze()

    def lexical_legs(self) -> dict[str, SparseBM25]:
        return {"words": self.words, "chars": self.chars, "pinyin": self.pinyin, "answer": self.answer}

    def add_one(self, item: _Prepared) -> Sequence[int]:
        slot = self._new_slot(item.entry)
        rows = self._new_rows(slot, item.texts, None, bulk=False)
        self.rows_of[item.entry.id] = rows
        self.words.add(rows, item.words)
        self.chars.add(rows, item.chars)
        self.pinyin.add(rows, item.pinyin)
        self.answer.add([slot], [item.answer_words])
        segments = self._new_segments(slot, item.segments, None)
        self.segments_of[item.entry.id] = segments
        assert item.vectors is not None and item.segment_vectors is not None
        self.dense.add(np.asarray(rows, dtype=np.int64), item.vectors)
        self.segment_dense.add(np.asarray(segments, dtype=np.int64), item.segment_vectors)
        self.centroid_dense.add(np.array([rows[0]], dtype=np.int64), _centroids([item.vectors]))
        if self.classifier is not None:
            self.classifier.imprint(item.entry.id, [char_grams(text) for text in item.texts], item.vectors)
            self.refresh_classes()
        return rows

    def refresh_classes(self) -> None:
        if self.classifier is None:
            self.class_slots = np.zeros(0, dtype=np.int64)
            return
        self.class_slots = np.array(
            [self.slot_of.get(int(entry_id), -1) for entry_id in self.classifier.classes], dtype=np.int64
        )

    def slot_logits(self, model: EntryClassifier | None, texts: Sequence[str], vectors: np.ndarray) -> np.ndarray:
        """Classifier scores per slot, one row per query; -inf for entries the model lacks."""
        out = np.full((len(texts), self.n_slots), -np.inf)
        if model is None or model.classes.shape[0] == 0:
            return out
        logits = model.logits([char_grams(text) for text in texts], vectors)
        if model is self.classifier and self.class_slots.shape[0] == model.classes.shape[0]:
            slots = self.class_slots
        else:
            slots = np.array([self.slot_of.get(int(entry_id), -1) for entry_id in model.classes], dtype=np.int64)
        known = slots >= 0
        out[:, slots[known]] = logits[:, known]
        return out

    def remove(self, entry_id: int) -> bool:
        slot = self.slot_of.pop(entry_id, None)
        if slot is None:
            return False
        rows = self.rows_of.pop(entry_id)
        del self.entries[entry_id]
        del self.digests[entry_id]
        self.slot_alive[slot] = False
        self.row_alive[np.asarray(rows, dtype=np.int64)] = False
        if self.classifier is not None:
            self.classifier.drop(entry_id)
            self.refresh_classes()
        for leg in (self.words, self.chars, self.pinyin):
            leg.remove(rows)
        self.answer.remove([slot])
        self.dense.remove(np.asarray(rows, dtype=np.int64))
        segments = self.segments_of.pop(entry_id)
        self.segment_alive[np.asarray(segments, dtype=np.int64)] = False
        self.segment_dense.remove(np.asarray(segments, dtype=np.int64))
        self.centroid_dense.remove(np.array([rows[0]], dtype=np.int64))
        return True


class HybridIndex:
    """Hybrid retrieval over :class:`IndexedEntry` objects. See the package docstring."""

    def __init__(
        self,
        *,
        embedder: Embedder,
        config: RetrievalConfig,
        synonyms: Sequence[tuple[str, str]] = (),
    ) -> None:
        self._embedder = embedder
        self._config = config
        self._synonyms: list[tuple[str, str]] = list(synonyms)
        # Guards the current state: searches score under it, writers mutate or swap under it.
        self._lock = threading.RLock()
        # Serialises writers so a live upsert cannot be lost to a concurrent rebuild's swap.
        self._write_lock = threading.RLock()
        self._state = _State(config, embedder.dim, Normaliser(self._synonyms))

    @property
    def config(self) -> RetrievalConfig:
        return self._config

    @property
    def embedder(self) -> Embedder:
        return self._embedder

    @property
    def fusion(self) -> FusionModel:
        return self._state.fusion

    def __len__(self) -> int:
        return len(self._state.entries)

    def __contains__(self, entry_id: object) -> bool:
        return entry_id in self._state.entries

    @property
    def checksum(self) -> str:
        """SHA-256 over (id, digest of all indexed fields) of every entry, in id order."""
        with self._lock:
            digests = list(self._state.digests.items())
        return combine_digests(digests)

    def entries(self) -> list[IndexedEntry]:
        with self._lock:
            return [self._state.entries[key] for key in sorted(self._state.entries)]

    def normalise(self, text: str) -> str:
        return self._state.normaliser.normalise(text, max_chars=self._config.max_query_chars)

    # ------------------------------------------------------------------ building

    def rebuild(self, entries: Iterable[IndexedEntry]) -> None:
        """Index ``entries`` from scratch and learn the fusion/calibration from them."""
        with self._write_lock:
            state = self._build_state(list(entries), Normaliser(self._synonyms), None, None, None)
            self._train(state)
            state.release_texts()
            with self._lock:
                self._state = state

    def _build_state(
        self,
        entries: list[IndexedEntry],
        normaliser: Normaliser,
        rows: list[list[int]] | None,
        segment_rows: list[list[int]] | None,
        dense: tuple[DenseIndex, DenseIndex, DenseIndex] | None,
        saved: dict[str, Any] | None = None,
    ) -> _State:
        seen: set[int] = set()
        for entry in entries:
            if entry.id in seen:
                raise ValueError(f"duplicate entry id {entry.id}")
            seen.add(entry.id)
        state = _State(self._config, self._embedder.dim, normaliser)
        if saved is not None:
            state.restore_vocabulary(saved["user_words"], saved["pinyin_words"])
        else:
            state.vocabulary(entries)
        state.add_bulk(
            (state.prepare(entry) for entry in entries), rows, segment_rows, None if saved is None else saved["avgdl"]
        )
        if dense is not None:
            state.dense, state.segment_dense, state.centroid_dense = dense
            return state
        self._embed_state(state)
        return state

    def _embed_state(self, state: _State) -> None:
        """Encode every question string and answer sentence into the FAISS indexes in chunks,
        in a random order so the first ``dense_train_sample`` vectors are a fair training sample
        for the compressed index kind. Peak memory stays at one chunk plus the training sample
        plus per-entry centroid sums (float16), instead of all vectors at once."""
        cfg = self._config
        options: dict[str, int] = {
            "exact_max_vectors": cfg.dense_exact_max_vectors,
            "pca_dim": cfg.dense_pca_dim,
            "nlist": cfg.dense_nlist,
            "nprobe": cfg.dense_nprobe,
        }
        rng = np.random.default_rng(cfg.train_seed)
        plan = self._plan_training(state, rng)
        state.train_plan = plan  # type: ignore[attr-defined]
        wanted = {row for row, _ in plan}
        if self._classifier_enabled(state):
            # The classifier learns from (a sample of) all question strings.
            rows = np.arange(state.n_rows)
            if rows.shape[0] > cfg.classifier_max_examples:
                rows = np.sort(rng.choice(rows, size=cfg.classifier_max_examples, replace=False))
            wanted.update(int(row) for row in rows)
            state.classifier_rows = rows  # type: ignore[attr-defined]
        kept: dict[int, np.ndarray] = {}
        sums = np.zeros((state.n_slots, self._embedder.dim), dtype=np.float16)

        def on_questions(ids: np.ndarray, vectors: np.ndarray) -> None:
            slots = state.row_slot[ids]
            np.add.at(sums, slots, vectors.astype(np.float16))
            for index, row in enumerate(ids):
                if int(row) in wanted:
                    kept[int(row)] = vectors[index].copy()

        self._stream(state.dense, state.texts(), state.n_rows, rng, options, on_questions)
        kept_segments: dict[int, np.ndarray] = {}
        on_segments = None
        if self._classifier_enabled(state):
            segment_rows = np.arange(state.n_segments)
            if segment_rows.shape[0] > cfg.classifier_max_examples:
                segment_rows = np.sort(rng.choice(segment_rows, size=cfg.classifier_max_examples, replace=False))
            wanted_segments = {int(row) for row in segment_rows}

            def on_segments(ids: np.ndarray, vectors: np.ndarray) -> None:
                for index, row in enumerate(ids):
                    if int(row) in wanted_segments:
                        kept_segments[int(row)] = vectors[index].copy()

        self._stream(state.segment_dense, state.texts(segments=True), state.n_segments, rng, options, on_segments)
        state.classifier_segments = kept_segments  # type: ignore[attr-defined]
        slots = np.array(sorted(state.slot_of.values()), dtype=np.int64)
        first_rows = np.array([state.rows_of[int(state.slot_id[slot])][0] for slot in slots], dtype=np.int64)
        state.centroid_dense.build_from(
            first_rows,
            lambda positions: _normalise_rows(sums[slots[positions]].astype(np.float32)),
            train_sample=cfg.dense_train_sample,
            seed=cfg.train_seed,
            **options,
        )
        state.train_vectors = kept  # type: ignore[attr-defined]
        # Training needs the sums of the positives' entries only (masked centroids); all of them
        # are 100 MB at 100k entries, held through the training peak for ~2000 rows.
        positive_slots = {int(state.row_slot[row]) for row, positive in plan if positive}
        state.train_sums = {slot: sums[slot].copy() for slot in positive_slots}  # type: ignore[attr-defined]

    def _stream(
        self,
        dense: DenseIndex,
        texts: Sequence[str],
        n: int,
        rng: np.random.Generator,
        options: dict[str, int],
        callback: Callable[[np.ndarray, np.ndarray], None] | None,
    ) -> None:
        order = rng.permutation(n).astype(np.int64)
        sample_size = min(n, self._config.dense_train_sample)
        chunk = _EMBED_CHUNK
        first = self._embedder.encode([texts[row] for row in order[:sample_size]]) if n else np.zeros((0, dense.dim))
        dense.reset(n, first, **options)
        pending = [(order[:sample_size], first)]
        for start in range(sample_size, n, chunk):
            ids = order[start : start + chunk]
            pending.append((ids, self._embedder.encode([texts[row] for row in ids])))
            self._flush(dense, pending, callback)
        self._flush(dense, pending, callback)

    @staticmethod
    def _flush(
        dense: DenseIndex,
        pending: list[tuple[np.ndarray, np.ndarray]],
        callback: Callable[[np.ndarray, np.ndarray], None] | None,
    ) -> None:
        for ids, vectors in pending:
            if ids.shape[0]:
                dense.add(ids, vectors)
                if callback is not None:
                    callback(ids, vectors)
        pending.clear()

    def upsert(self, entry: IndexedEntry) -> None:
        """Add or replace one entry; searchable as soon as this returns (no rebuild, ~10 ms)."""
        with self._write_lock:
            state = self._state
            with self._lock:
                state.vocabulary([entry])
                prepared = state.prepare(entry)
            # Embedding is the slow part; searches keep running meanwhile.
            vectors = self._embedder.encode([*prepared.texts, *prepared.segments])
            prepared.vectors = vectors[: len(prepared.texts)]
            prepared.segment_vectors = vectors[len(prepared.texts) :]
            with self._lock:
                state.remove(entry.id)
                state.add_one(prepared)

    def remove(self, entry_id: int) -> None:
        """Remove an entry; a no-op for an unknown id."""
        with self._write_lock, self._lock:
            self._state.remove(entry_id)

    def set_synonyms(self, synonyms: Sequence[tuple[str, str]]) -> None:
        """Replace the synonym table and re-normalise the whole index (a full rebuild: the
        normalised strings, the vocabulary and the learned fusion all depend on it)."""
        with self._write_lock:
            self._synonyms = list(synonyms)
            self.rebuild(self.entries())

    @property
    def synonyms(self) -> list[tuple[str, str]]:
        return list(self._synonyms)

    # ------------------------------------------------------------------ scoring

    def _candidates(
        self,
        state: _State,
        text: str,
        dense_scores: np.ndarray,
        dense_ids: np.ndarray,
        segment_scores: np.ndarray,
        segment_ids: np.ndarray,
        centroid_scores: np.ndarray,
        centroid_ids: np.ndarray,
        *,
        eligible: np.ndarray,
        masked_centroid: tuple[int, float] | None = None,
        exclude_rows: Sequence[int] = (),
        class_logits: np.ndarray | None = None,
    ) -> _Candidates:
        cfg = self._config
        n_slots = state.n_slots
        tokeniser = state.tokeniser
        words = tokeniser.words(text)
        chars = tokeniser.char_ngrams(text)
        pinyin = tokeniser.pinyin_ngrams(text)
        row_alive = state.row_alive[: state.n_rows].copy()
        if exclude_rows:
            row_alive[np.asarray(exclude_rows)] = False

        legs: dict[str, np.ndarray] = {}
        # Per leg, the entries it actually scored (postings hit, FAISS neighbours, classes): the
        # pool is chosen among them, never by a pass over every entry of a 100k KB.
        support: dict[str, np.ndarray] = {}
        memo: dict[str, Postings] = {name: {} for name in ("words", "chars", "pinyin", "answer")}
        for name, bm25, terms in (
            ("words", state.words, words),
            ("chars", state.chars, chars),
            ("pinyin", state.pinyin, pinyin),
        ):
            row_scores, self_score, hit_rows = bm25.score(terms, state.n_rows, memo[name])
            hit_rows = hit_rows[row_alive[hit_rows]]
            slot_scores = np.zeros(n_slots, dtype=np.float32)
            hit_slots = state.row_slot[hit_rows]
            # Repeated rows are harmless: the maximum is idempotent.
            np.maximum.at(slot_scores, hit_slots, row_scores[hit_rows])
            legs[name] = slot_scores / np.float32(self_score)
            support[name] = _distinct(hit_slots, n_slots)
        answer_scores, answer_self, answer_hits = state.answer.score(words, n_slots, memo["answer"])
        legs["answer"] = answer_scores / np.float32(answer_self)
        support["answer"] = _distinct(answer_hits, n_slots)

        legs["dense"], support["dense"] = _group_max(n_slots, dense_ids, dense_scores, row_alive, state.row_slot)
        legs["answer_dense"], support["answer_dense"] = _group_max(
            n_slots,
            segment_ids,
            segment_scores,
            state.segment_alive[: state.n_segments],
            state.segment_slot,
        )
        legs["centroid"], support["centroid"] = _group_max(
            n_slots, centroid_ids, centroid_scores, state.row_alive[: state.n_rows], state.row_slot
        )
        if masked_centroid is not None:
            # Training: the entry's centroid without the masked paraphrase.
            slot, value = masked_centroid
            legs["centroid"][slot] = value
        legs["classifier"] = np.zeros(n_slots, dtype=np.float32)
        support["classifier"] = np.zeros(0, dtype=np.int64)
        if class_logits is not None:
            # Softmax over the entries the caller may see: an entry hidden from this audience
            # (or masked in training) must not soak up probability.
            known = eligible & np.isfinite(class_logits)
            if known.any():
                values = class_logits[known]
                exp = np.exp(values - values.max())
                # Log-probability, mapped to 0..1 (0 at p <= e^-10): the softmax's own scale,
                # where the probability itself crushes everything but the top entry to ~0 and
                # the fusion cannot tell a close second from a hopeless one.
                legs["classifier"][known] = np.maximum(0.0, 1.0 + np.log(exp / exp.sum() + 1e-12) / 10.0)
                support["classifier"] = np.flatnonzero(known)
        exact = np.zeros(n_slots, dtype=bool)
        for row in state.exact_keys.rows(text):
            if row_alive[row]:
                exact[state.row_slot[row]] = True
        exact &= eligible

        pool: set[int] = set()
        for name in LEGS:
            scored = support[name]
            scored = scored[eligible[scored]]
            values = legs[name][scored]
            if not name.endswith("dense"):
                scored, values = scored[values > 0], values[values > 0]
            take = min(cfg.candidate_pool, scored.shape[0])
            if 0 < take < scored.shape[0]:
                scored = scored[np.argpartition(-values, take - 1)[:take]]
            pool.update(int(slot) for slot in scored)
        pool.update(int(slot) for slot in np.flatnonzero(exact))
        # Order by entry id, not slot: slots differ between a live index and its reloaded copy,
        # and rank features break ties by position.
        slots = np.array(sorted(pool, key=lambda slot: int(state.slot_id[slot])), dtype=np.int64)
        n = slots.shape[0]
        features = np.zeros((n, len(FEATURES)), dtype=np.float64)
        legs_first = np.zeros(n, dtype=np.float64)
        if n == 0:
            return _Candidates(slots, features, legs_first, {})

        picked: dict[str, np.ndarray] = {}
        for name in LEGS:
            values = legs[name][slots].astype(np.float64)
            picked[name] = values
            # Competition ranking (equal values share a rank, and a shared first place has no
            # margin): otherwise equal candidates would differ by their position in the pool.
            descending = -np.sort(-values)
            ranks = np.searchsorted(-descending, -values, side="left").astype(np.float64)
            best = descending[0]
            second = descending[1] if n > 1 else best - 1.0
            gap = np.where(ranks == 0, best - second, values - best)
            features[:, _FEATURE_INDEX[f"{name}_score"]] = values
            features[:, _FEATURE_INDEX[f"{name}_gap"]] = gap
            features[:, _FEATURE_INDEX[f"{name}_rr"]] = 1.0 / (1.0 + ranks)
            legs_first += ranks == 0
        legs_first /= len(LEGS)

        content = list(dict.fromkeys(word for word in words if word not in STOPWORDS))
        features[:, _FEATURE_INDEX["coverage_words"]] = self._coverage(
            state, state.words, content, slots, row_alive, memo["words"], answer_memo=memo["answer"]
        )
        bigrams = list(dict.fromkeys(chars))
        features[:, _FEATURE_INDEX["coverage_chars"]] = self._coverage(
            state, state.chars, bigrams, slots, row_alive, memo["chars"]
        )
        features[:, _FEATURE_INDEX["query_len"]] = math.log1p(len(text))
        features[:, _FEATURE_INDEX["exact_match"]] = exact[slots]
        if content:
            unknown = sum(
                1
                for word in content
                if not state.words.has_live(word, memo["words"]) and not state.answer.has_live(word, memo["answer"])
            )
            features[:, _FEATURE_INDEX["unknown_share"]] = unknown / len(content)
        return _Candidates(slots, features, legs_first, picked)

    def _score(
        self,
        state: _State,
        text: str,
        found: tuple[np.ndarray, ...],
        eligible: np.ndarray,
        class_logits: np.ndarray | None,
    ) -> tuple[_Candidates, np.ndarray, np.ndarray, np.ndarray] | None:
        """Candidates of one audience with their fused logits, calibrated confidence and the
        positions of exact matches; None when nothing is a candidate."""
        cfg = self._config
        candidates = self._candidates(
            state, text, *(part[0] for part in found), eligible=eligible, class_logits=class_logits
        )
        if candidates.slots.shape[0] == 0:
            return None
        fusion = state.fusion
        logits = fusion.ranker.logit(candidates.features)
        confidence = fusion.calibrator.proba(calibration_inputs(logits, candidates.legs_first, candidates.features))
        exact_column = candidates.features[:, _FEATURE_INDEX["exact_match"]]
        exact = np.flatnonzero(exact_column > 0)
        if exact.shape[0] == 1:
            # The operator wrote this very question for this entry (and for no other): that
            # outranks anything the learned fusion makes of a string it may never have seen
            # (an entry upserted after the last rebuild, with no paraphrases).
            confidence[exact[0]] = max(float(confidence[exact[0]]), cfg.exact_match_confidence)
            confidence[exact_column == 0] = np.minimum(
                confidence[exact_column == 0], float(confidence[exact[0]]) - 1e-6
            )
        return candidates, logits, confidence, exact

    def _broad(self, state: _State, text: str, eligible: np.ndarray) -> bool:
        """Whether the query is one content word found in the questions of at least
        ``broad_query_entries`` entries the caller may see."""
        content = list(dict.fromkeys(w for w in state.tokeniser.words(skeleton(text)) if w not in STOPWORDS))
        if len(content) != 1:
            return False
        col = state.words.vocab.get(content[0])
        if col is None:
            return False
        rows = state.words._postings(col)[0]
        rows = rows[state.row_alive[rows]]
        slots = _distinct(state.row_slot[rows], state.n_slots)
        return int(eligible[slots].sum()) >= self._config.broad_query_entries

    def _internal_only(
        self,
        state: _State,
        text: str,
        found: tuple[np.ndarray, ...],
        class_logits: np.ndarray | None,
        now: datetime | None,
    ) -> bool:
        """Whether, seen with agent eligibility, the query confidently asks for an
        ``agent_only`` entry (scored only when the customer view is not already answering)."""
        # Cheap gate first (most queries never come near an internal entry): one of the
        # nearest indexed strings must belong to an agent_only entry.
        rows = found[1][0][: self._config.candidate_pool]
        rows = rows[(rows >= 0) & (rows < state.n_rows)]
        if not state.slot_agent_only[state.row_slot[rows]].any():
            return False
        visible = self._eligible(state, agent=True, now=now)
        scored = self._score(state, text, found, visible, class_logits)
        if scored is None:
            return False
        candidates, logits, confidence, _ = scored
        best = int(np.lexsort((-np.round(logits, 6), -np.round(confidence, 6)))[0])
        return bool(state.slot_agent_only[candidates.slots[best]]) and confidence[best] >= self._config.answer_threshold

    @staticmethod
    def _coverage(
        state: _State,
        bm25: SparseBM25,
        terms: list[str],
        slots: np.ndarray,
        row_alive: np.ndarray,
        memo: Postings,
        *,
        answer_memo: Postings | None = None,
    ) -> np.ndarray:
        """IDF-weighted share of the query's terms found in each candidate's strings (and
        answer, given ``answer_memo``): low coverage flags keyword lures that match one word of
        a longer question."""
        covered = np.zeros(slots.shape[0], dtype=np.float64)
        total = 0.0
        # Marks over all entries, set and cleared per term: O(postings), where np.isin sorted a
        # common term's postings (100k rows at 100k entries) for every query.
        marks = np.zeros(state.n_slots, dtype=bool)
        for term in terms:
            col = bm25.vocab.get(term)
            rows = bm25._postings(col, memo)[0] if col is not None else np.zeros(0, dtype=np.int64)
            rows = rows[row_alive[rows]] if rows.shape[0] else rows
            idf = bm25.idf(int(rows.shape[0]))
            total += idf
            having = state.row_slot[rows]
            if answer_memo is not None:
                answer_col = state.answer.vocab.get(term)
                if answer_col is not None:
                    having = np.concatenate([having, state.answer._postings(answer_col, answer_memo)[0]])
            marks[having] = True
            covered += idf * marks[slots]
            marks[having] = False
        return covered / total if total > 0 else covered

    def _eligible(self, state: _State, *, agent: bool, now: datetime | None) -> np.ndarray:
        eligible = state.slot_alive[: state.n_slots].copy()
        if not agent:
            moment = (now or datetime.now(UTC)).timestamp()
            eligible &= ~state.slot_agent_only[: state.n_slots]
            eligible &= state.slot_from[: state.n_slots] <= moment
            eligible &= moment < state.slot_to[: state.n_slots]
        return eligible

    def _dense_search(self, state: _State, vectors: np.ndarray, extra: int = 0) -> tuple[np.ndarray, ...]:
        k = self._config.dense_neighbours
        scores, ids = state.dense.search(vectors, k + extra)
        segment_scores, segment_ids = state.segment_dense.search(vectors, k)
        centroid_scores, centroid_ids = state.centroid_dense.search(vectors, k)
        return scores, ids, segment_scores, segment_ids, centroid_scores, centroid_ids

    # ------------------------------------------------------------------ training

    def _classifier_enabled(self, state: _State) -> bool:
        return 3 <= state.n_slots <= self._config.classifier_max_classes

    def _fit_classifiers(
        self, state: _State, kept: dict[int, np.ndarray]
    ) -> tuple[EntryClassifier | None, list[EntryClassifier], dict[int, int]]:
        """The classifier served at search time, plus cross-fitted fold models: the fusion must
        learn from the classifier's output on strings it was not trained on, or it would trust
        the classifier as much as a memorised training string deserves.

        Folds are assigned round-robin within each entry so that every fold model still knows
        every entry with two or more strings."""
        cfg = self._config
        rows = state.__dict__.pop("classifier_rows", None)
        segments: dict[int, np.ndarray] = state.__dict__.pop("classifier_segments", {})
        if rows is None or not self._classifier_enabled(state):
            return None, [], {}
        rows = np.asarray([row for row in rows if int(row) in kept], dtype=np.int64)
        terms = [char_grams(state.texts()[row]) for row in rows]
        vectors = np.vstack([kept[int(row)] for row in rows]).astype(np.float32)
        labels = state.slot_id[state.row_slot[rows]]
        # Answer sentences are extra examples of their entry in every model: customers describe
        # their situation in the answer's words (a product name, a symptom) more often than in
        # the words of the KB's paraphrases.
        segment_ids = np.array(sorted(segments), dtype=np.int64)
        segment_terms = [char_grams(state.texts(segments=True)[row]) for row in segment_ids]
        segment_vectors = (
            np.vstack([segments[int(row)] for row in segment_ids]).astype(np.float32)
            if segment_ids.shape[0]
            else np.zeros((0, vectors.shape[1]), dtype=np.float32)
        )
        segment_labels = state.slot_id[state.segment_slot[segment_ids]]
        options: dict[str, Any] = {
            "l2": cfg.classifier_l2,
            "dense_scale": cfg.classifier_dense_scale,
            "max_iter": cfg.classifier_max_iter,
            "min_df": cfg.classifier_min_df,
        }

        def fit(train: np.ndarray) -> EntryClassifier:
            return train_classifier(
                [terms[i] for i in train] + segment_terms,
                np.vstack([vectors[train], segment_vectors]),
                np.concatenate([labels[train], segment_labels]),
                **options,
            )

        full = fit(np.arange(rows.shape[0]))
        rng = np.random.default_rng(cfg.train_seed + 2)
        fold = np.zeros(rows.shape[0], dtype=np.int64)
        by_entry: dict[int, list[int]] = {}
        for position, label in enumerate(labels):
            by_entry.setdefault(int(label), []).append(position)
        for positions in by_entry.values():
            offset = int(rng.integers(cfg.classifier_folds))
            for order, position in enumerate(rng.permutation(positions)):
                fold[position] = (offset + order) % cfg.classifier_folds
        models: list[EntryClassifier] = []
        for part in range(cfg.classifier_folds):
            models.append(fit(np.flatnonzero(fold != part)))
        return full, models, {int(row): int(part) for row, part in zip(rows, fold, strict=True)}

    def _plan_training(self, state: _State, rng: np.random.Generator) -> list[tuple[int, bool]]:
        """Pick the training queries (row, is_positive) deterministically, capped in number."""
        cfg = self._config
        rows_by_slot = {state.slot_of[eid]: rows for eid, rows in state.rows_of.items()}
        positives = [row for rows in rows_by_slot.values() if len(rows) >= 2 for row in rows]
        negatives = [row for rows in rows_by_slot.values() for row in rows]
        if len(rows_by_slot) < 3 or not positives:
            return []
        n_negative = round(cfg.train_max_queries * cfg.train_negative_share)
        n_positive = cfg.train_max_queries - n_negative
        pos = rng.choice(positives, size=min(n_positive, len(positives)), replace=False)
        # Keep the natural balance on small KBs: about one negative per entry is plenty.
        share = cfg.train_negative_share
        n_negative = min(n_negative, len(rows_by_slot), max(1, int(len(pos) * share / (1 - share))))
        neg = rng.choice(negatives, size=min(n_negative, len(negatives)), replace=False)
        return [(int(row), True) for row in pos] + [(int(row), False) for row in neg]

    def _train(self, state: _State) -> None:
        """Fit the fusion ranker and calibrator on queries made from the KB itself.

        Positives: a question string of an entry with at least two strings, searched with that
        one string masked out (the entry's other strings and answer stay). Negatives: a string
        of an entry searched with the whole entry masked — the right outcome is "none", which
        teaches the calibrator what a near miss from a sibling entry looks like.
        """
        cfg = self._config
        kept: dict[int, np.ndarray] = getattr(state, "train_vectors", {})
        sums: dict[int, np.ndarray] | None = getattr(state, "train_sums", None)
        queries: list[tuple[int, bool]] = getattr(state, "train_plan", [])
        for name in ("train_vectors", "train_sums", "train_plan"):
            if hasattr(state, name):
                delattr(state, name)
        rows_by_slot = {state.slot_of[eid]: rows for eid, rows in state.rows_of.items()}
        state.classifier, fold_models, fold_of = self._fit_classifiers(state, kept)
        state.refresh_classes()
        if not queries or sums is None:
            state.fusion = FusionModel()
            return
        rng = np.random.default_rng(cfg.train_seed + 1)
        query_rows = np.array([row for row, _ in queries], dtype=np.int64)
        texts = [state.texts()[row] for row in query_rows]
        query_vectors = np.vstack([kept[int(row)] for row in query_rows]).astype(np.float32)
        # KB paraphrases are clean, so without noise the model never sees a query where the
        # pinyin leg matches but the character legs do not. Corrupt a share of the training
        # queries the way customers type: a homophone typo or a dropped character.
        noisy = [
            index for index in range(len(queries)) if rng.random() < cfg.train_typo_share and len(texts[index]) >= 4
        ]
        homophones = _homophones(state)
        for index in noisy:
            texts[index] = _corrupt(texts[index], homophones, rng)
        if noisy:
            query_vectors[noisy] = self._embedder.encode([texts[index] for index in noisy])
        longest = max(len(rows) for rows in rows_by_slot.values())
        found = self._dense_search(state, query_vectors, extra=longest)
        # Customers often type the standard question itself; a share of positives keeps its own
        # string indexed so that exact matches are not outside what the model has seen.
        exact = rng.random(len(queries)) < cfg.train_exact_share
        # Without a classifier (large KBs) there are no logits: a (queries x entries) matrix of
        # -inf would be 1.6 GB at 100k entries.
        class_logits: np.ndarray | None = None
        if state.classifier is not None:
            class_logits = np.full((len(queries), state.n_slots), -np.inf)
            # Exact-regime queries see the served model (it was trained on their string); the
            # rest see the fold model that never saw it.
            model_of = [
                -1 if positive and exact[index] else fold_of.get(row, -1)
                for index, (row, positive) in enumerate(queries)
            ]
            for part in sorted(set(model_of)):
                members = [index for index, value in enumerate(model_of) if value == part]
                model = state.classifier if part < 0 else fold_models[part]
                class_logits[members] = state.slot_logits(
                    model, [texts[index] for index in members], query_vectors[members]
                )

        everything = state.slot_alive[: state.n_slots].copy()
        blocks: list[np.ndarray] = []
        labels: list[np.ndarray] = []
        groups: list[np.ndarray] = []
        firsts: list[np.ndarray] = []
        for index, (row, positive) in enumerate(queries):
            slot = int(state.row_slot[row])
            masked_centroid = None
            if positive and exact[index]:
                eligible, masked = everything, []
            elif positive:
                eligible, masked = everything, [row]
                # The entry's centroid without the masked string (from the streamed sums).
                rest = sums[slot].astype(np.float32) - kept[row]
                norm = float(np.linalg.norm(rest))
                if norm > 1e-6:
                    masked_centroid = (slot, float(rest @ query_vectors[index]) / norm)
            else:
                eligible = everything.copy()
                eligible[slot] = False
                masked = list(rows_by_slot[slot])
            candidates = self._candidates(
                state,
                texts[index],
                *(part[index] for part in found),
                eligible=eligible,
                exclude_rows=masked,
                masked_centroid=masked_centroid,
                class_logits=None if class_logits is None else class_logits[index],
            )
            if candidates.slots.shape[0] == 0:
                continue
            blocks.append(candidates.features)
            labels.append((candidates.slots == slot) & positive)
            groups.append(np.full(candidates.slots.shape[0], index))
            firsts.append(candidates.legs_first)
        x = np.vstack(blocks)
        blocks.clear()
        y = np.concatenate(labels).astype(np.float64)
        group = np.concatenate(groups)
        legs_first = np.concatenate(firsts)
        ranker = (
            Logistic.fit_listwise(x, y, group, cfg.train_l2) if cfg.train_listwise else Logistic.fit(x, y, cfg.train_l2)
        )
        logits = ranker.logit(x)
        cal_x: list[np.ndarray] = []
        cal_y: list[np.ndarray] = []
        for index in np.unique(group):
            mask = group == index
            inputs = calibration_inputs(logits[mask], legs_first[mask], x[mask])
            top = np.argsort(-logits[mask])[:3]
            cal_x.append(inputs[top])
            cal_y.append(y[mask][top])
        calibrator = Logistic.fit(np.vstack(cal_x), np.concatenate(cal_y), cfg.train_l2)
        state.fusion = FusionModel(
            ranker,
            calibrator,
            {
                "positives": sum(1 for _, positive in queries if positive),
                "negatives": sum(1 for _, positive in queries if not positive),
                "rows": int(x.shape[0]),
            },
        )

    # ------------------------------------------------------------------ search

    def search(
        self,
        query: str,
        *,
        audience: Literal["customer", "agent"],
        now: datetime | None = None,
        limit: int = 5,
    ) -> SearchOutcome:
        """Rank entries for ``query``.

        Customers never see ``agent_only`` entries or entries outside their validity window,
        not even among low-confidence hits. With tier ``none`` the hits are still returned
        (best first, low confidence) for the admin test bench; callers must not show them.
        """
        if not isinstance(query, str) or not query.strip():
            raise ValueError("query must be a non-empty string with visible characters")
        if audience not in ("customer", "agent"):
            raise ValueError(f"audience must be 'customer' or 'agent', not {audience!r}")
        if limit < 1:
            raise ValueError("limit must be at least 1")
        if now is not None and now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        cfg = self._config
        with self._lock:
            state = self._state
            text = state.normaliser.normalise(query, max_chars=cfg.max_query_chars)
        if not text or state.n_slots == 0:
            return SearchOutcome("none", [], text)
        vector = self._embedder.encode([text])
        with self._lock:
            state = self._state
            found = self._dense_search(state, vector)
            eligible = self._eligible(state, agent=audience == "agent", now=now)
            class_logits = state.slot_logits(state.classifier, [text], vector)[0] if state.classifier else None
            scored = self._score(state, text, found, eligible, class_logits)
            if scored is None:
                return SearchOutcome("none", [], text)
            candidates, logits, confidence, exact = scored
            entry_ids = state.slot_id[candidates.slots]
            # Entry id last: equal scores must not be ordered by slot or pool position, which
            # differ between a live index and its saved-and-loaded copy.
            # Rounded first: two identical entries may differ in the last bits (summation order in BLAS).
            order = np.lexsort((entry_ids, -np.round(logits, 6), -np.round(confidence, 6)))
            hits = [
                Hit(
                    entry_id=int(state.slot_id[candidates.slots[i]]),
                    external_id=state.entries[int(state.slot_id[candidates.slots[i]])].external_id,
                    confidence=float(confidence[i]),
                    legs={
                        **{name: round(float(candidates.legs[name][i]), 4) for name in LEGS},
                        "coverage": round(float(candidates.features[i, _FEATURE_INDEX["coverage_words"]]), 4),
                        "exact": float(candidates.features[i, _FEATURE_INDEX["exact_match"]]),
                        "logit": round(float(logits[i]), 4),
                    },
                )
                for i in order[: max(limit, cfg.max_suggestions)]
            ]
            # A bare keyword that many entries share (发票, 宽带) names a topic, not a question: the
            # fusion was trained on whole questions and may be sure of one entry, but the
            # customer has not said which of the topic's questions they mean.
            broad = exact.shape[0] == 0 and self._broad(state, text, eligible)
            internal = False
            if audience == "customer" and hits[0].confidence < cfg.answer_threshold:
                internal = self._internal_only(state, text, found, class_logits, now)
        top = hits[0].confidence
        tier: Tier
        if internal:
            # Only an agent_only entry answers this: look-alike public entries would be lures,
            # so say it plainly (the dialogue offers a human) instead of suggesting them.
            tier, hits = "none", hits[:limit]
        elif top >= cfg.answer_threshold and not broad:
            tier, hits = "answer", hits[:limit]
        elif (top >= cfg.suggest_threshold or broad) and len(hits) >= 2:
            tier = "suggest"
            chosen = [hit for i, hit in enumerate(hits) if i < 2 or hit.confidence >= cfg.suggestion_floor]
            hits = chosen[: cfg.max_suggestions]
            if not broad and all(hit.legs["coverage"] <= 0 for hit in hits):
                # Not one word of the question in any choice: the choices are the embedding's
                # guesses near a question the KB does not hold (星河云盘怎么扩容 → 会员星级).
                tier = "none"
        else:
            tier, hits = "none", hits[:limit]
        return SearchOutcome(tier, hits, text)

    # ------------------------------------------------------------------ persistence

    def save(self, directory: Path) -> None:
        """Write the index to ``directory`` (created if needed): entries, the FAISS index and
        the learned fusion. Lexical legs are rebuilt from the entries on load (fast)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        with self._write_lock, self._lock:
            state = self._state
            meta = {
                "format": _FORMAT,
                "embedder": self._embedder.name,
                "dim": self._embedder.dim,
                "synonyms": [list(pair) for pair in self._synonyms],
                "fusion": state.fusion.to_dict(),
                "checksum": self.checksum,
                "n_rows": state.n_rows,
                "user_words": sorted(state.tokeniser.user_words),
                "pinyin_words": state.normaliser.pinyin_vocabulary,
                "avgdl": {name: leg.avgdl for name, leg in state.lexical_legs().items()},
            }
            with (directory / "entries.jsonl").open("w", encoding="utf-8") as handle:
                for entry_id in sorted(state.entries):
                    record = {
                        "entry": _entry_to_json(state.entries[entry_id]),
                        "rows": list(state.rows_of[entry_id]),
                        "segments": list(state.segments_of[entry_id]),
                    }
                    handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            state.dense.save(directory / "dense.faiss")
            state.segment_dense.save(directory / "answers.faiss")
            state.centroid_dense.save(directory / "centroids.faiss")
            classifier_path = directory / "classifier.npz"
            if state.classifier is not None:
                with classifier_path.open("wb") as handle:
                    np.savez(handle, **state.classifier.to_arrays())  # type: ignore[arg-type]
            elif classifier_path.exists():
                classifier_path.unlink()
            (directory / "meta.json").write_text(json.dumps(meta, ensure_ascii=False, indent=1), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path, *, embedder: Embedder, config: RetrievalConfig) -> HybridIndex:
        directory = Path(directory)
        meta = json.loads((directory / "meta.json").read_text(encoding="utf-8"))
        if meta.get("format") != _FORMAT:
            raise ValueError(f"{directory}: unsupported index format {meta.get('format')!r}")
        if meta["embedder"] != embedder.name or int(meta["dim"]) != embedder.dim:
            raise ValueError(
                f"{directory} was built with embedder {meta['embedder']!r} ({meta['dim']}-d), "
                f"not {embedder.name!r}: rebuild the index"
            )
        synonyms = [(pair[0], pair[1]) for pair in meta["synonyms"]]
        index = cls(embedder=embedder, config=config, synonyms=synonyms)
        entries: list[IndexedEntry] = []
        rows: list[list[int]] = []
        segments: list[list[int]] = []
        with (directory / "entries.jsonl").open(encoding="utf-8") as handle:
            for line in handle:
                record = json.loads(line)
                entries.append(_entry_from_json(record["entry"]))
                rows.append([int(row) for row in record["rows"]])
                segments.append([int(row) for row in record["segments"]])
        dense = DenseIndex.load(directory / "dense.faiss", embedder.dim)
        segment_dense = DenseIndex.load(directory / "answers.faiss", embedder.dim)
        centroid_dense = DenseIndex.load(directory / "centroids.faiss", embedder.dim)
        for loaded in (dense, segment_dense, centroid_dense):
            loaded.set_nprobe(config.dense_nprobe)
        state = index._build_state(
            entries,
            Normaliser(synonyms),
            rows,
            segments,
            (dense, segment_dense, centroid_dense),
            saved={key: meta[key] for key in ("user_words", "pinyin_words", "avgdl")},
        )
        state.release_texts()
        state.fusion = FusionModel.from_dict(meta["fusion"])
        classifier_path = directory / "classifier.npz"
        if classifier_path.exists():
            with np.load(classifier_path, allow_pickle=False) as arrays:
                state.classifier = EntryClassifier.from_arrays({key: arrays[key] for key in arrays.files})
            state.refresh_classes()
        index._state = state
        if index.checksum != meta["checksum"]:
            raise ValueError(f"{directory}: checksum mismatch, the saved index is corrupt")
        return index
