"""Gateway settings (``KEFU_`` prefix): listening address, Rasa, service hours and the internal API secret."""

import re
from datetime import time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_HOURS = re.compile(r"^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$")


def parse_hours(value: str) -> tuple[time, time]:
    """'08:00-22:00' → (08:00, 22:00)."""
    match = _HOURS.match(value.strip())
    if not match:
        raise ValueError(f"expected HH:MM-HH:MM, got {value!r}")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    start, end = time(h1, m1), time(h2, m2)
    if end <= start:
        raise ValueError(f"{value!r} ends before it starts")
    return start, end


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KEFU_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    index_save_interval_s: float = Field(default=30.0, gt=0)

    rasa_url: str = "http://127.0.0.1:5005"
    rasa_timeout_s: float = Field(default=5.0, gt=0)
    # Shared secret the action server presents to the internal API; no default, by design.
    internal_token: SecretStr | None = None

    timezone: str = "Asia/Shanghai"
    # Human text service and the window in which callbacks may be booked (local time).
    human_hours: str = "08:00-22:00"
    callback_hours: str = "09:00-21:00"
    # Below this NLU confidence a dialogue command does not override the knowledge base.
    command_min_confidence: float = Field(default=0.5, ge=0, le=1)
    # Turns answered at once by this process (a 2-core machine saturates at a handful); more wait their turn.
    max_concurrent_turns: int = Field(default=8, ge=1)

    @field_validator("human_hours", "callback_hours")
    @classmethod
    def _hours(cls, value: str) -> str:
        parse_hours(value)
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown timezone {value!r}") from exc
        return value

    @field_validator("internal_token")
    @classmethod
    def _strong(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("KEFU_INTERNAL_TOKEN must be at least 16 characters")
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)
