"""Multi-step knowledge processes: file import/export and keeping the live index true to the database."""

import hashlib
import json
import logging
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from pydantic import ValidationError
from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

from common.db import session_scope
from knowledge import service
from knowledge.retrieval import Embedder, HybridIndex, IndexedEntry, RetrievalConfig, entries_checksum
from knowledge.schemas import KbRecord

log = logging.getLogger(__name__)

MAX_LINE_BYTES = 1_000_000
MANIFEST = "manifest.json"


@dataclass
class LineError:
    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


class ImportRejected(Exception):
    """The whole file was refused; nothing was written."""

    def __init__(self, errors: list[LineError]):
        self.errors = errors
        shown = "; ".join(str(e) for e in errors[:10])
        more = f" (and {len(errors) - 10} more)" if len(errors) > 10 else ""
        super().__init__(f"import rejected, nothing changed: {shown}{more}")


@dataclass
class ImportReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, int]:
        return {"created": len(self.created), "updated": len(self.updated), "unchanged": len(self.unchanged)}


def parse_jsonl(stream: BinaryIO) -> list[KbRecord]:
    """Validate a whole JSONL file, collecting every bad line before refusing it."""
    records: list[KbRecord] = []
    errors: list[LineError] = []
    first_line: dict[str, int] = {}
    for number, raw in enumerate(_lines(stream), start=1):
        if len(raw) > MAX_LINE_BYTES:
            errors.append(LineError(number, f"line longer than {MAX_LINE_BYTES} bytes"))
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            errors.append(LineError(number, f"invalid UTF-8 at byte {exc.start}"))
            continue
        if not text.strip():
            continue
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            errors.append(LineError(number, f"invalid JSON: {exc.msg} at column {exc.colno}"))
            continue
        if not isinstance(data, dict):
            errors.append(LineError(number, "expected a JSON object"))
            continue
        try:
            record = KbRecord.model_validate(data)
        except ValidationError as exc:
            reasons = ", ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'record'}: {err['msg']}" for err in exc.errors()
            )
            errors.append(LineError(number, reasons))
            continue
        if record.id in first_line:
            errors.append(LineError(number, f"duplicate id {record.id} (first on line {first_line[record.id]})"))
            continue
        first_line[record.id] = number
        records.append(record)
    if errors:
        raise ImportRejected(errors)
    if not records:
        raise ImportRejected([LineError(0, "the file holds no entries")])
    return records


def _lines(stream: BinaryIO) -> Iterator[bytes]:
    for raw in stream:
        yield raw.rstrip(b"\r\n")


def import_jsonl(*, session_factory: sessionmaker[Session], path: Path, actor: str) -> ImportReport:
    """Upsert every entry of a JSONL file in one transaction, or change nothing at all."""
    with path.open("rb") as stream:
        records = parse_jsonl(stream)
    report = ImportReport()
    with session_scope(session_factory) as db_session:
        for record in records:
            outcome = service.upsert_record(db_session=db_session, record=record, actor=actor)
            getattr(report, outcome).append(record.id)
    return report


def export_jsonl(*, session_factory: sessionmaker[Session]) -> Iterator[str]:
    """Every entry as one JSON line, in the format import reads."""
    with session_scope(session_factory) as db_session:
        for entry in service.get_all(db_session=db_session):
            yield json.dumps(service.to_record(entry), ensure_ascii=False)


def write_jieba_userdict(path: Path, records: Iterable[KbRecord]) -> int:
    """A jieba user dictionary of the KB's domain words (tags and short titles), for Rasa's tokenizer."""
    words: set[str] = set()
    for record in records:
        words.update(tag for tag in record.tags if 2 <= len(tag) <= 12 and " " not in tag)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A high frequency makes jieba keep these words whole; "n" is as good a tag as any for NLU.
    path.write_text("".join(f"{word} 2000 n\n" for word in sorted(words)), encoding="utf-8")
    return len(words)


def checksum(entries: Iterable[IndexedEntry]) -> tuple[int, str]:
    """Count and checksum of what the index must hold (the same checksum the index reports)."""
    entries = list(entries)
    return len(entries), entries_checksum(entries)


class LiveIndex:
    """The process's index: opened from disk when it matches the database, kept current on every commit."""

    def __init__(self, *, index: HybridIndex, directory: Path, embedder_name: str, source: str):
        self.index = index
        # "disk" or "rebuilt": how this process got its index (shown in logs, asserted in tests).
        self.source = source
        self.directory = directory
        self.embedder_name = embedder_name
        self._lock = threading.Lock()
        self._dirty = False

    @classmethod
    def open(
        cls,
        *,
        session_factory: sessionmaker[Session],
        directory: Path,
        embedder: Embedder,
        config: RetrievalConfig,
        synonyms: list[tuple[str, str]],
    ) -> "LiveIndex":
        """Load the saved index if its manifest matches the database, else rebuild and save it."""
        with session_scope(session_factory) as db_session:
            entries = service.searchable(db_session=db_session)
        count, digest = checksum(entries)
        expected = _manifest(count=count, digest=digest, embedder_name=embedder.name, synonyms=synonyms)
        manifest = _read_manifest(directory)
        if manifest == expected:
            try:
                index = HybridIndex.load(directory, embedder=embedder, config=config)
                log.info("index loaded from %s (%d entries)", directory, count)
                return cls(index=index, directory=directory, embedder_name=embedder.name, source="disk")
            except Exception:
                log.exception("saved index at %s is unreadable; rebuilding", directory)
        else:
            log.info("index at %s does not match the database (%s != %s); rebuilding", directory, manifest, expected)
        index = HybridIndex(embedder=embedder, config=config, synonyms=synonyms)
        index.rebuild(entries)
        live = cls(index=index, directory=directory, embedder_name=embedder.name, source="rebuilt")
        live.save(entries_digest=expected)
        return live

    def apply(self, pending: dict[int, IndexedEntry | None]) -> None:
        """Bring committed changes into the index: upsert what is published, remove the rest."""
        with self._lock:
            for entry_id, entry in pending.items():
                if entry is None:
                    self.index.remove(entry_id)
                else:
                    self.index.upsert(entry)
            self._dirty = True

    def save(self, *, entries_digest: dict[str, Any]) -> None:
        """Persist the index with the manifest it was checked against."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with self._lock:
            self.index.save(self.directory)
            (self.directory / MANIFEST).write_text(json.dumps(entries_digest), encoding="utf-8")
            self._dirty = False

    def save_if_dirty(self, *, session_factory: sessionmaker[Session], synonyms: list[tuple[str, str]]) -> bool:
        """Persist after live edits so the next start loads instead of rebuilding."""
        if not self._dirty:
            return False
        with session_scope(session_factory) as db_session:
            count, digest = checksum(service.searchable(db_session=db_session))
        self.save(
            entries_digest=_manifest(count=count, digest=digest, embedder_name=self.embedder_name, synonyms=synonyms)
        )
        return True


def install_live_sync(session_factory: sessionmaker[Session], live: LiveIndex) -> None:
    """Apply each committed knowledge change to the live index, and forget rolled-back ones."""

    def after_commit(db_session: Session) -> None:
        pending = db_session.info.pop(service.PENDING_KEY, None)
        if pending:
            live.apply(pending)

    def after_rollback(db_session: Session) -> None:
        db_session.info.pop(service.PENDING_KEY, None)

    event.listen(session_factory, "after_commit", after_commit)
    event.listen(session_factory, "after_rollback", after_rollback)


def _read_manifest(directory: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _manifest(*, count: int, digest: str, embedder_name: str, synonyms: list[tuple[str, str]]) -> dict[str, Any]:
    return {
        "count": count,
        "checksum": digest,
        "embedder": embedder_name,
        "synonyms": _synonyms_digest(synonyms),
    }


def _synonyms_digest(synonyms: list[tuple[str, str]]) -> str:
    return hashlib.sha256(json.dumps(sorted(synonyms), ensure_ascii=False).encode()).hexdigest()
