"""WeChat Official Account settings (environment prefix ``KEFU_WECHAT_``)."""

import base64
import binascii

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _aes_key(value: SecretStr | None) -> SecretStr | None:
    if value is None or not value.get_secret_value():
        return None
    raw = value.get_secret_value()
    try:
        ok = len(raw) == 43 and len(base64.b64decode(raw + "=", validate=True)) == 32
    except (binascii.Error, ValueError):
        ok = False
    if not ok:
        raise ValueError("an EncodingAESKey is 43 base64 characters (32 bytes)")
    return value


class WechatSettings(BaseSettings):
    """The channel is off unless a token is set; then the app id and secret are required too."""

    model_config = SettingsConfigDict(env_prefix="KEFU_WECHAT_", extra="ignore")

    token: SecretStr | None = None
    appid: str = ""
    secret: SecretStr | None = None
    # Unset: plaintext mode only. Set: compatible and safe modes (encrypted replies when asked to).
    aes_key: SecretStr | None = None
    # The key before the last rotation in the WeChat admin: messages already in flight still decrypt.
    previous_aes_key: SecretStr | None = None
    api_base: str = "https://api.weixin.qq.com"
    api_timeout_s: float = Field(default=5.0, gt=0)
    # WeChat drops the connection after 5 s and retries; past this budget we answer `success` and push later.
    reply_budget_s: float = Field(default=4.0, gt=0, lt=5)
    # With more turns than this in flight (the push's own included) the process is busy: a push is acknowledged
    # with `success` as soon as it is stored and its answer goes out through the customer-service API, so
    # acknowledgements stay fast under load. Accounts without that API (unverified subscription accounts)
    # set a high number and rely on passive replies alone.
    passive_max_in_flight: int = Field(default=1, ge=1)
    max_timestamp_skew_s: int = Field(default=300, ge=1)
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    # Outside the 48-hour window, notices go out as this template (fields `first`, `keyword1`, `remark`).
    template_id: str = ""
    # How long a numbered-choice menu (回复 1/2/3) stays valid for a customer.
    choices_ttl_s: int = Field(default=24 * 3600, ge=60)

    @field_validator("aes_key", "previous_aes_key")
    @classmethod
    def _check_aes(cls, value: SecretStr | None) -> SecretStr | None:
        return _aes_key(value)

    @model_validator(mode="after")
    def _complete(self) -> "WechatSettings":
        if self.enabled and (not self.appid or self.secret is None or not self.secret.get_secret_value()):
            raise ValueError("KEFU_WECHAT_TOKEN is set: KEFU_WECHAT_APPID and KEFU_WECHAT_SECRET are required too")
        return self

    @property
    def enabled(self) -> bool:
        """Whether the gateway serves the WeChat endpoint."""
        return self.token is not None and bool(self.token.get_secret_value())
