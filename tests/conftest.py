"""Test databases: every DB test runs on SQLite and on the real PostgreSQL, inside a rolled-back transaction."""

import os
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.orm import Session, sessionmaker

from common.db import make_engine
from gateway import migrate
from tests.live import product  # noqa: F401  (the shared real product: gateway + Rasa + actions)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
SHARED_KB = ROOT.parent / "shared" / "data" / "kb"
PG_ADMIN_URL = os.environ.get("KEFU_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")

# The action tests run in the Rasa venv (Python 3.10), from `make test`, not in this one.
collect_ignore = ["actions"]

_pg_unavailable: list[str] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _pg_unavailable:
        terminalreporter.section("PostgreSQL NOT TESTED", sep="!", red=True, bold=True)
        terminalreporter.write_line(
            f"No PostgreSQL answered at {PG_ADMIN_URL}: {_pg_unavailable[0]}. "
            "Every PostgreSQL variant of the database tests was SKIPPED.",
            red=True,
            bold=True,
        )


@pytest.fixture(scope="session")
def _postgres_url() -> Iterator[str]:
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"kefu_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        admin.dispose()
        _pg_unavailable.append(type(exc).__name__)
        warnings.warn(f"PostgreSQL unavailable, its tests are skipped: {exc}", stacklevel=1)
        pytest.skip(f"no PostgreSQL server answered at {PG_ADMIN_URL}")
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        migrate.upgrade(url)
        yield url
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def _sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'kefu.db'}"
    migrate.upgrade(url)
    return url


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    """A migrated throwaway database of each kind."""
    return str(request.getfixturevalue(f"_{'postgres' if request.param == 'postgresql' else 'sqlite'}_url"))


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def connection(engine: Engine) -> Iterator[Connection]:
    """A connection inside a transaction that is rolled back after the test, whatever it committed."""
    with engine.connect() as connection:
        outer = connection.begin()
        yield connection
        outer.rollback()


@pytest.fixture
def session_factory(connection: Connection) -> sessionmaker[Session]:
    """Sessions whose commits are savepoints of the test's transaction."""
    return sessionmaker(bind=connection, expire_on_commit=False, join_transaction_mode="create_savepoint")


@pytest.fixture
def db_session(session_factory: sessionmaker[Session]) -> Iterator[Session]:
    with session_factory() as session:
        yield session


@pytest.fixture(scope="module")
def factory(engine: Engine) -> Iterator[sessionmaker[Session]]:
    """One rolled-back transaction for a whole module: the demo KB and its index are built once."""
    with engine.connect() as connection:
        outer = connection.begin()
        yield sessionmaker(bind=connection, expire_on_commit=False, join_transaction_mode="create_savepoint")
        outer.rollback()


@contextmanager
def demo_gateway(
    factory: sessionmaker[Session], var: Path, *, internal_token: str = "t" * 32, **settings: Any
) -> Iterator[TestClient]:
    """A gateway on `factory` with the demo KB imported and indexed, no Rasa (the engine degrades)."""
    from pydantic import SecretStr

    from common.settings import CommonSettings
    from gateway.app import create_app
    from gateway.settings import GatewaySettings
    from knowledge import flows
    from knowledge.retrieval import UseEmbedder
    from knowledge.settings import KnowledgeSettings

    kb = KnowledgeSettings(index_dir=var / "index")
    flows.import_jsonl(session_factory=factory, path=kb.demo_kb_path, actor="demo")
    # Nothing answers on port 9: no Rasa here, even if a developer runs one on the default port.
    gateway = GatewaySettings(rasa_url="http://127.0.0.1:9", internal_token=SecretStr(internal_token))
    app = create_app(
        common=CommonSettings(var_dir=var),
        kb_settings=kb,
        gateway_settings=gateway,
        session_factory=factory,
        embedder=UseEmbedder(),
        **settings,
    )
    with TestClient(app) as client:
        assert app.state.index_ready.wait(180), "index never became ready"
        yield client
