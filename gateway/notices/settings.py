"""Notice settings (``KEFU_NOTICES_`` prefix); the events API key is a secret with no default."""

from datetime import time
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from common.settings import generated_secret

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from gateway.clients.billing import Billing


class NoticeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KEFU_NOTICES_", extra="ignore")

    # What the operator's systems present to `POST /api/v1/events`; `kefu run` generates one into var/secrets.
    api_key: SecretStr | None = None
    # No notices in these local hours unless the event is urgent (they wait for the morning).
    quiet_hours: str = "22:00-08:00"
    max_per_day: int = Field(default=3, ge=1)
    # How often scheduled notices (quiet hours, retries) are looked for; 0 turns the background sender off
    # (events are still delivered at once), for tests whose requests share one database connection.
    poll_s: float = Field(default=2.0, ge=0)
    max_attempts: int = Field(default=6, ge=1)
    batch: int = Field(default=200, ge=1)
    # The base of confirm-page links in SMS and template messages.
    public_url: str = "http://127.0.0.1:8000"
    # Scheduled scans run once a day at this local time (empty: never by themselves; `kefu notices scan` runs them).
    scan_at: str = "10:00"
    low_balance_below: Decimal = Field(default=Decimal("10"), gt=0)
    package_expiring_days: int = Field(default=3, ge=1)
    # The operator's billing API; unset: the demo billing system in our own database.
    billing_url: str = ""
    billing_api_key: SecretStr | None = None

    @field_validator("scan_at")
    @classmethod
    def _scan_at(cls, value: str) -> str:
        if value:
            time.fromisoformat(value)
        return value

    @field_validator("quiet_hours")
    @classmethod
    def _quiet(cls, value: str) -> str:
        if value:
            quiet_window(value)
        return value

    def billing(self, db_session: "Session") -> "Billing":
        """The billing system these settings point at (the demo one in our database when none is configured)."""
        from gateway.clients.billing import make_billing

        key = self.billing_api_key.get_secret_value() if self.billing_api_key is not None else None
        return make_billing(url=self.billing_url, api_key=key, db_session=db_session)


def quiet_window(value: str) -> tuple[time, time]:
    """'22:00-08:00' → (22:00, 08:00); unlike service hours, quiet hours may wrap midnight."""
    start, _, end = value.strip().partition("-")
    try:
        return time.fromisoformat(start), time.fromisoformat(end)
    except ValueError as exc:
        raise ValueError(f"expected HH:MM-HH:MM, got {value!r}") from exc


def events_api_key(var_dir: Path) -> SecretStr:
    """The operator's key from the environment, or one generated once under var/secrets (shown by `kefu demo load`)."""
    return SecretStr(generated_secret(var_dir, env="KEFU_NOTICES_API_KEY", name="events_api_key"))
