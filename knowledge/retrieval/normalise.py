"""Text normalisation shared by indexed KB text and incoming queries.

Both sides go through exactly the same steps, so whatever a step does to a word (even a
questionable OpenCC phrase choice) happens identically on both sides and still matches.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path

from knowledge.retrieval.lexical import jieba_frequencies

_SPACE = re.compile(r"\s+")
# Three or more repeats of one non-digit character ("啊啊啊啊", "？？？") carry emotion, not content.
_REPEAT = re.compile(r"([^\d\s])\1{2,}")
_LATIN_RUN = re.compile(r"[a-z]+")
# A stretch that is itself a word this common in general Chinese (几分, 花费) is what the
# customer meant, not a typo of the KB word it sounds like (积分, 话费).
_COMMON_WORD = 20
_CJK_RUN = re.compile(r"[\u4e00-\u9fff]{2,}")
# Data volumes: "2个G", "30g", "1.5GB", "500兆" -> "2gb", "30gb", "1.5gb", "500mb". Bare 2g..5g
# stay as they are because they usually name a network generation (5G套餐, 4G信号).
_GB = re.compile(r"(?<![\d.a-z])(\d+(?:\.\d+)?)\s*(个)?\s*(?:gb|g|吉)(?![a-z])")
_MB = re.compile(r"(?<![\d.a-z])(\d+(?:\.\d+)?)\s*(个)?\s*(?:mbps|mb|m|兆)(?![a-z])")
_NETWORK_GENERATION = {"2", "3", "4", "5"}


# Lengths of the stretches the homophone typo pass compares with KB words (longest first).
_TYPO_MIN_LEN, _TYPO_MAX_LEN = 2, 4


def _blank(word: str, position: int, syllable: str) -> str:
    return f"{word[:position]}\0{syllable}\0{word[position + 1 :]}"


def _is_cjk(char: str) -> bool:
    return "\u4e00" <= char <= "\u9fff" or "\u3400" <= char <= "\u4dbf"


def _gb(match: re.Match[str]) -> str:
    number, measure = match.group(1), match.group(2)
    if number in _NETWORK_GENERATION and not measure:
        return f"{number}g"
    return f"{number}gb"


def _mb(match: re.Match[str]) -> str:
    return f"{match.group(1)}mb"


class Normaliser:
    """Traditional->Simplified (OpenCC phrase level), full-width->half-width (NFKC), case folding,
    removal of punctuation/emoji/control characters, data-unit folding, then the synonym table.

    ``synonyms`` are ``(variant, canonical)`` pairs. Variants made of Latin letters only match
    whole Latin words (so ``manyou`` does not fire inside another word); others match anywhere,
    longest variant first, in one pass (a replacement is never rewritten again).
    """

    def __init__(self, synonyms: Sequence[tuple[str, str]] = ()) -> None:
        import opencc

        # Character-level t2s only detects Traditional text. Phrase configs (tw2sp, hk2s) are
        # applied to Traditional text only, because on Simplified input tw2sp rewrites ordinary
        # words (行程 -> 进程, 查询 -> 查找).
        self._detect = opencc.OpenCC("t2s")
        self._taiwan = opencc.OpenCC("tw2sp")
        self._hongkong = opencc.OpenCC("hk2s")
        self._pinyin_words: dict[str, str] = {}
        self._pinyin_sources: list[str] = []
        self._max_pinyin_len = 0
        self._vocabulary: set[str] = set()
        # Every 2-4 character pinyin word with one character blanked out, plus that character's
        # syllable: a stretch can only be a one-character typo of such a word if it matches one of
        # these keys with a reading of its own character there. Stretches that match none skip the
        # pinyin conversion of the whole run (indexing ~10 % faster, measured without a profiler).
        self._one_off: set[str] = set()
        self._readings: dict[str, tuple[str, ...]] = {}
        self.synonyms: list[tuple[str, str]] = []
        self._pattern: re.Pattern[str] | None = None
        self._replacement: dict[str, str] = {}
        self.set_synonyms(synonyms)

    def set_synonyms(self, synonyms: Sequence[tuple[str, str]]) -> None:
        cleaned: dict[str, str] = {}
        for variant, canonical in synonyms:
            key = self._base(variant)
            value = self._base(canonical)
            if key and value and key != value:
                cleaned[key] = value
        self.synonyms = sorted(cleaned.items())
        # Canonical forms map to themselves so that a longer canonical word is consumed whole
        # before one of its parts can match as a variant (转网 inside 携号转网).
        table = {value: value for value in cleaned.values()}
        table.update(cleaned)
        self._replacement = table
        if not cleaned:
            self._pattern = None
            return
        parts = []
        for variant in sorted(table, key=len, reverse=True):
            escaped = re.escape(variant)
            if variant.isascii() and variant[0].isalnum():
                escaped = rf"(?<![a-z]){escaped}(?![a-z])"
            parts.append(escaped)
        self._pattern = re.compile("|".join(parts))

    def add_pinyin_vocabulary(self, words: Iterable[str]) -> None:
        """Let Latin runs typed as toneless pinyin ("liuliang", "tingjibaohao") become the KB's
        own words. Only words of 2+ Chinese characters are used; on a pinyin collision the first
        word wins."""
        from pypinyin import Style, lazy_pinyin

        for word in words:
            if len(word) < 2 or word in self._vocabulary or not all(_is_cjk(char) for char in word):
                continue
            self._vocabulary.add(word)
            # Every word, not only those that won their pinyin key: a word that lost a collision
            # still counts as a KB word that is never "corrected", in a reloaded index too.
            self._pinyin_sources.append(word)
            syllables = lazy_pinyin(word, style=Style.NORMAL)
            key = "".join(syllables)
            if key.isascii() and key.isalpha() and key not in self._pinyin_words:
                self._pinyin_words[key] = word
                if len(word) <= _TYPO_MAX_LEN and len(syllables) == len(word):
                    self._one_off.update(_blank(word, position, syllables[position]) for position in range(len(word)))
                self._max_pinyin_len = max(self._max_pinyin_len, len(key))

    @property
    def pinyin_vocabulary(self) -> list[str]:
        """Words registered with :meth:`add_pinyin_vocabulary`, in registration order."""
        return list(self._pinyin_sources)

    def _base(self, text: str) -> str:
        text = unicodedata.normalize("NFKC", text)
        if self._detect.convert(text) != text:
            text = self._hongkong.convert(self._taiwan.convert(text))
        text = text.casefold()
        chars = []
        for index, char in enumerate(text):
            category = unicodedata.category(char)
            if category[0] in "LN" or (
                char == "." and 0 < index < len(text) - 1 and text[index - 1].isdigit() and text[index + 1].isdigit()
            ):
                chars.append(char)
            else:
                chars.append(" ")
        text = _REPEAT.sub(r"\1", "".join(chars))
        return _SPACE.sub(" ", text).strip()

    def _pinyin_run(self, match: re.Match[str]) -> str:
        run = match.group(0)
        if len(run) < 4 or not self._pinyin_words:
            return run
        if run in self._pinyin_words:
            return self._pinyin_words[run]
        # Greedy longest-match segmentation; give up unless the whole run is covered, so English
        # words are left alone.
        out: list[str] = []
        position = 0
        while position < len(run):
            for end in range(min(len(run), position + self._max_pinyin_len), position + 3, -1):
                word = self._pinyin_words.get(run[position:end])
                if word is not None:
                    out.append(word)
                    position = end
                    break
            else:
                return run
        return "".join(out)

    def _homophone_run(self, match: re.Match[str]) -> str:
        # Typing by pinyin input method picks a same-sounding wrong character (留量, 停机报号,
        # 冲值): a 2-4 character stretch that sounds exactly like a KB word and differs from it
        # in one character becomes that word. Two differing characters are left alone, since that
        # is usually another real word (期间 is not 旗舰).
        from pypinyin import Style, lazy_pinyin

        common = jieba_frequencies()
        run = match.group(0)
        if not self._may_be_typo(run):
            # No window is one character away from a pinyin word: the loop below would return the
            # run unchanged, at the cost of a pinyin conversion.
            return run
        syllables = lazy_pinyin(run, style=Style.NORMAL)
        if len(syllables) != len(run):
            return run
        out: list[str] = []
        position = 0
        while position < len(run):
            for length in range(_TYPO_MAX_LEN, _TYPO_MIN_LEN - 1, -1):
                window = run[position : position + length]
                if len(window) < length:
                    continue
                if window in self._vocabulary:
                    out.append(window)
                    break
                word = self._pinyin_words.get("".join(syllables[position : position + length]))
                if (
                    word is not None
                    and len(word) == length
                    and sum(a != b for a, b in zip(word, window, strict=True)) == 1
                    and common.get(window, 0) < _COMMON_WORD
                ):
                    out.append(word)
                    break
            else:
                out.append(run[position])
                position += 1
                continue
            position += length
        return "".join(out)

    def _may_be_typo(self, run: str) -> bool:
        one_off, vocabulary = self._one_off, self._vocabulary
        readings = [self._char_readings(char) for char in run]
        for length in range(_TYPO_MIN_LEN, _TYPO_MAX_LEN + 1):
            for start in range(len(run) - length + 1):
                window = run[start : start + length]
                if window in vocabulary:
                    continue
                for position in range(length):
                    for syllable in readings[start + position]:
                        if _blank(window, position, syllable) in one_off:
                            return True
        return False

    def _char_readings(self, char: str) -> tuple[str, ...]:
        # Every reading, not the one in context: the filter must never miss what the phrase-level
        # conversion of the whole run would find.
        cached = self._readings.get(char)
        if cached is None:
            from pypinyin import Style, pinyin

            cached = tuple(pinyin(char, style=Style.NORMAL, heteronym=True)[0])
            self._readings[char] = cached
        return cached

    def normalise(self, text: str, *, max_chars: int | None = None) -> str:
        if max_chars is not None:
            # Cut before the expensive steps; the slack absorbs characters the cleaning removes.
            text = text[: max_chars * 4]
        text = self._base(text)
        if self._pattern is not None:
            pattern, table = self._pattern, self._replacement
            text = pattern.sub(lambda match: table[match.group(0)], text)
        if self._pinyin_words:
            text = _LATIN_RUN.sub(self._pinyin_run, text)
            text = _CJK_RUN.sub(self._homophone_run, text)
        text = _GB.sub(_gb, text)
        text = _MB.sub(_mb, text)
        # Space only matters between Latin/digit tokens; between Chinese characters it is noise
        # that would break words and character n-grams.
        text = re.sub(r"(?<=[^a-z0-9 ]) (?=[^a-z0-9 ])", "", text)
        if max_chars is not None:
            text = text[:max_chars]
        return text.strip()

    @staticmethod
    def load_synonyms(path: str | Path) -> list[tuple[str, str]]:
        """Read a synonym table: one ``variant<TAB>canonical`` pair a line; ``#`` starts a
        comment. A line ``canonical<TAB>v1|v2|v3`` is not supported on purpose: one pair a line
        keeps diffs reviewable."""
        pairs: list[tuple[str, str]] = []
        for number, raw in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
            line = raw.split("#", 1)[0].rstrip()
            if not line.strip():
                continue
            fields = [field.strip() for field in line.split("\t") if field.strip()]
            if len(fields) != 2:
                raise ValueError(f"{path}:{number}: expected 'variant<TAB>canonical', got {raw!r}")
            pairs.append((fields[0], fields[1]))
        return pairs


def default_synonyms_path() -> Path:
    return Path(__file__).resolve().parent.parent / "data" / "synonyms.tsv"
