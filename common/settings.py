"""Typed settings shared by every package (environment prefix ``KEFU_``)."""

import os
import secrets
from functools import lru_cache
from pathlib import Path

from pydantic import field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class CommonSettings(BaseSettings):
    """Where state lives and how the process logs."""

    model_config = SettingsConfigDict(env_prefix="KEFU_", extra="ignore")

    # Relative paths resolve against the working directory: `make run` starts from the repo root.
    var_dir: Path = Path("var")
    database_url: str = ""
    redis_url: str | None = None
    log_level: str = "INFO"
    log_json: bool = False

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        value = value.upper()
        if value not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError(f"unknown log level {value!r}")
        return value

    @property
    def resolved_database_url(self) -> str:
        """The configured URL, or a SQLite file under ``var_dir``."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.var_dir / 'kefu.db').resolve()}"


@lru_cache
def get_common_settings() -> CommonSettings:
    """Settings read once from the environment."""
    return CommonSettings()


def generated_secret(var_dir: Path, *, env: str, name: str) -> str:
    """A secret from the environment, else one generated once into `<var>/secrets/<name>` (mode 0600), so a
    single-machine install works out of the box while an operator sets every secret explicitly."""
    configured = os.environ.get(env)
    if configured:
        return configured
    path = var_dir / "secrets" / name
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(32)
    path.write_text(value)
    path.chmod(0o600)
    return value
