"""Web chat settings (environment prefix ``KEFU_WEBCHAT_``)."""

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class WebchatSettings(BaseSettings):
    """Limits of the widget channel; the visitor-token secret has no default (the gateway supplies one)."""

    model_config = SettingsConfigDict(env_prefix="KEFU_WEBCHAT_", extra="ignore")

    visitor_secret: SecretStr = Field(min_length=16)
    # Larger frames are refused with an error frame; a widget message is at most max_text_chars characters.
    max_frame_bytes: int = Field(default=16_384, ge=1024)
    max_text_chars: int = Field(default=2000, ge=1)
    hello_timeout_s: float = Field(default=10.0, gt=0)
    long_poll_s: float = Field(default=25.0, gt=0, le=60)
    history_limit: int = Field(default=200, ge=1, le=1000)
