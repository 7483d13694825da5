"""The hand-written migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

import importlib
import re

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine

from common.db import Base
from tests.conftest import ROOT


def _model_modules() -> list[str]:
    """The model modules the migration environment registers (one list, kept in env.py)."""
    env = (ROOT / "gateway" / "migrations" / "env.py").read_text(encoding="utf-8")
    return re.findall(r"^import ([\w.]+\.models)\b", env, flags=re.M)


def test_every_model_module_is_registered_for_migrations() -> None:
    registered = set(_model_modules())
    on_disk = {
        ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for package in ("common", "knowledge", "connectors", "gateway")
        for path in (ROOT / package).rglob("models.py")
    }
    assert on_disk <= registered, f"model modules missing from gateway/migrations/env.py: {on_disk - registered}"


def test_models_and_migrations_agree(engine: Engine) -> None:
    for module in _model_modules():
        importlib.import_module(module)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        diff = compare_metadata(context, Base.metadata)
    assert diff == [], "models and migrations disagree:\n" + "\n".join(map(str, diff))
