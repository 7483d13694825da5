"""The live index against a real database: edits searchable on commit, start-up check, persistence."""

import json
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from knowledge import flows, service
from knowledge.retrieval import Embedder, Normaliser, RetrievalConfig
from knowledge.schemas import EntryUpdate
from knowledge.settings import KnowledgeSettings
from tests.knowledge import factories

SETTINGS = KnowledgeSettings()


@pytest.fixture
def demo_db(session_factory: sessionmaker[Session]) -> sessionmaker[Session]:
    flows.import_jsonl(session_factory=session_factory, path=SETTINGS.demo_kb_path, actor="demo")
    return session_factory


def _open(factory: sessionmaker[Session], directory: Path, embedder: Embedder) -> flows.LiveIndex:
    live = flows.LiveIndex.open(
        session_factory=factory,
        directory=directory,
        embedder=embedder,
        config=RetrievalConfig(),
        synonyms=Normaliser.load_synonyms(SETTINGS.synonyms_path),
    )
    flows.install_live_sync(factory, live)
    return live


def _top(live: flows.LiveIndex, query: str, audience: str = "customer") -> str | None:
    outcome = service.search(index=live.index, query=query, audience=audience)  # type: ignore[arg-type]
    return outcome.hits[0].external_id if outcome.hits else None


def test_committed_edits_are_live_and_rollbacks_are_not(
    demo_db: sessionmaker[Session], tmp_path: Path, embedder: Embedder
) -> None:
    live = _open(demo_db, tmp_path / "index", embedder)
    assert len(live.index) == 160  # every demo entry is published

    with demo_db() as s:
        entry = factories.entry(
            s,
            id="NEW0001",
            title="星河卡能不能在火星上用？",
            similar=["火星漫游怎么收费"],
            answer="火星暂未开通漫游。",
            status="published",
        )
        s.commit()
    assert _top(live, "火星上手机能用吗") == "NEW0001"

    with demo_db() as s:
        entry = service.get_by_external_id(db_session=s, external_id="NEW0001")
        assert entry is not None
        service.update(
            db_session=s,
            entry=entry,
            actor="a",
            entry_in=EntryUpdate(title="星河卡能不能在月球上用？", similar=["月球漫游怎么收费"]),
        )
        s.rollback()
    assert _top(live, "月球漫游怎么收费") != "NEW0001"

    with demo_db() as s:
        entry = service.get_by_external_id(db_session=s, external_id="NEW0001")
        assert entry is not None
        service.archive(db_session=s, entry=entry, actor="a")
        s.commit()
    assert _top(live, "火星上手机能用吗") != "NEW0001"


def test_drafts_are_not_searchable_until_published(
    demo_db: sessionmaker[Session], tmp_path: Path, embedder: Embedder
) -> None:
    live = _open(demo_db, tmp_path / "index", embedder)
    with demo_db() as s:
        draft = factories.entry(s, id="DRAFT01", title="水星套餐怎么退订？", similar=["退掉水星套餐"])
        s.commit()
        assert _top(live, "水星套餐怎么退订", "agent") != "DRAFT01"
        service.publish(db_session=s, entry=draft, actor="a")
        s.commit()
    assert _top(live, "水星套餐怎么退订", "agent") == "DRAFT01"


def test_index_is_reloaded_when_it_matches_and_rebuilt_when_it_does_not(
    demo_db: sessionmaker[Session], tmp_path: Path, embedder: Embedder
) -> None:
    first = _open(demo_db, tmp_path / "index", embedder)
    assert first.source == "rebuilt"

    again = _open(demo_db, tmp_path / "index", embedder)
    assert again.source == "disk"
    with demo_db() as s:
        # The manifest and the index speak of the same checksum.
        assert flows.checksum(service.searchable(db_session=s))[1] == again.index.checksum
    assert _top(again, "话费余额怎么查") == _top(first, "话费余额怎么查") == "KB0101"

    # A change the saved index never saw (another process, a crash before saving) forces a rebuild.
    with demo_db() as s:
        entry = service.get_by_external_id(db_session=s, external_id="KB0101")
        assert entry is not None
        service.update(db_session=s, entry=entry, entry_in=EntryUpdate(answer="改过的答案"), actor="a")
        s.commit()
    assert _open(demo_db, tmp_path / "index", embedder).source == "rebuilt"


def test_an_index_saved_in_another_format_is_rebuilt(
    demo_db: sessionmaker[Session], tmp_path: Path, embedder: Embedder
) -> None:
    # Same entries, but indexed by an older release whose normalisation differed.
    _open(demo_db, tmp_path / "index", embedder)
    meta_path = tmp_path / "index" / "meta.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    meta["format"] -= 1
    meta_path.write_text(json.dumps(meta), encoding="utf-8")
    assert _open(demo_db, tmp_path / "index", embedder).source == "rebuilt"


def test_live_edits_are_saved_so_the_next_start_loads(
    demo_db: sessionmaker[Session], tmp_path: Path, embedder: Embedder
) -> None:
    live = _open(demo_db, tmp_path / "index", embedder)
    with demo_db() as s:
        factories.entry(s, id="SAVE001", title="金星套餐怎么办理？", status="published")
        s.commit()
    synonyms = Normaliser.load_synonyms(SETTINGS.synonyms_path)
    assert live.save_if_dirty(session_factory=demo_db, synonyms=synonyms) is True
    assert live.save_if_dirty(session_factory=demo_db, synonyms=synonyms) is False

    reopened = _open(demo_db, tmp_path / "index", embedder)
    assert reopened.source == "disk"
    assert _top(reopened, "金星套餐怎么办理") == "SAVE001"


def test_customers_never_see_agent_only_entries(
    demo_db: sessionmaker[Session], tmp_path: Path, embedder: Embedder
) -> None:
    live = _open(demo_db, tmp_path / "index", embedder)
    with demo_db() as s:
        internal = {e.id for e in service.get_all(db_session=s, audience="agent_only")}
        titles = [e.title for e in service.get_all(db_session=s, audience="agent_only")]
    assert internal
    for title in titles:
        customer = service.search(index=live.index, query=title, audience="customer")
        assert not {h.entry_id for h in customer.hits} & internal
        agent = service.search(index=live.index, query=title, audience="agent")
        assert agent.hits and agent.hits[0].entry_id in internal


def test_a_question_only_an_internal_entry_answers_offers_no_look_alikes(
    demo_db: sessionmaker[Session], tmp_path: Path, embedder: Embedder
) -> None:
    live = _open(demo_db, tmp_path / "index", embedder)
    with demo_db() as s:
        questions = [
            q
            for e in service.get_all(db_session=s, audience="agent_only")
            for q in (e.title, *(x.text for x in e.similar))
        ]
    confident = 0
    for question in questions:
        agent = service.search(index=live.index, query=question, audience="agent")
        if agent.tier != "answer":
            continue
        customer = service.search(index=live.index, query=question, audience="customer")
        if customer.tier == "answer":
            continue  # a public entry answers it too (停机保号 has both)
        # Public entries that merely look alike (携号转网 -> 办新卡怎么挑选号码) would be lures.
        assert customer.tier == "none", (question, [h.external_id for h in customer.hits])
        confident += 1
    assert confident >= 5
