"""SQLAlchemy 2 engine and session factories, and the declarative base every model shares."""

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import DateTime, Engine, MetaData, create_engine, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

# Stable constraint names keep Alembic migrations identical on SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite drops the offset otherwise)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given where UTC is required")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    """The current time, timezone-aware."""
    return datetime.now(UTC)


READ_ONLY = "kefu_read_only"


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for ``url``; SQLite gets WAL, foreign keys and its directory created."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        kwargs.setdefault("connect_args", {"check_same_thread": False, "timeout": 30})
        engine = create_engine(url, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        _serialise_sqlite_transactions(engine, timeout_s=float(kwargs["connect_args"].get("timeout", 30)))
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


def _serialise_sqlite_transactions(engine: Engine, *, timeout_s: float) -> None:
    """One transaction at a time per process, queued on a lock instead of SQLite's busy handler.

    pysqlite's own implicit transactions break SAVEPOINT; SQLAlchemy emits BEGIN itself. IMMEDIATE takes the
    write lock up front: a deferred transaction that reads and then writes fails with "database is locked"
    under concurrency instead of waiting. Waiting in SQLite's busy handler means sleeping 25-100 ms at a
    time while the lock may already be free: under 50 concurrent requests most of the time went there.
    A process-wide lock hands the database from one transaction to the next at once (other processes still
    meet the busy timeout). Not an RLock: FastAPI may end a request's transaction on another thread.
    """
    lock = threading.Lock()

    def begin(connection: Any) -> None:
        if connection.get_execution_options().get(READ_ONLY):
            # A WAL reader sees the last commit and neither waits for the writer nor holds it up.
            # query_only turns an accidental write into an error instead of a lock upgrade.
            connection.exec_driver_sql("PRAGMA query_only=ON")
            connection.exec_driver_sql("BEGIN")
            connection.info["kefu_sqlite_read_only"] = True
            return
        if not lock.acquire(timeout=timeout_s):
            raise TimeoutError(f"database busy for {timeout_s:.0f} s")
        connection.info["kefu_sqlite_lock"] = True
        try:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            connection.info.pop("kefu_sqlite_lock", None)
            lock.release()
            raise

    def end(connection: Any) -> None:
        if connection.info.pop("kefu_sqlite_read_only", False):
            connection.exec_driver_sql("PRAGMA query_only=OFF")
        if connection.info.pop("kefu_sqlite_lock", False):
            lock.release()

    event.listen(engine, "begin", begin)
    event.listen(engine, "commit", end)
    event.listen(engine, "rollback", end)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def table_names(url: str) -> list[str]:
    """The tables a database already has (e.g. to refuse writing test data into a real one)."""
    engine = make_engine(url)
    try:
        return inspect(engine).get_table_names()
    finally:
        engine.dispose()


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded objects usable after commit."""
    return sessionmaker(bind=engine, expire_on_commit=False)


def read_only_factory(factory: sessionmaker[Session]) -> sessionmaker[Session]:
    """Sessions for reads only: on SQLite they skip the writers' queue (and refuse to write)."""
    bind = factory.kw.get("bind")
    if not isinstance(bind, Engine) or bind.dialect.name != "sqlite":
        return factory
    return sessionmaker(bind=bind.execution_options(**{READ_ONLY: True}), expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
