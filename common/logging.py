"""Process-wide logging set-up: plain lines for people, JSON lines for collectors."""

import json
import logging
import sys
from typing import Any


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload, ensure_ascii=False)


def configure_logging(level: str = "INFO", *, json_lines: bool = False) -> None:
    """Install one stderr handler on the root logger (idempotent)."""
    root = logging.getLogger()
    root.setLevel(level)
    for handler in list(root.handlers):
        if getattr(handler, "_kefu", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler._kefu = True  # type: ignore[attr-defined]
    handler.setFormatter(
        _JsonFormatter() if json_lines else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root.addHandler(handler)
    # jieba prints its dictionary loading at INFO on every start; it is noise to an operator.
    logging.getLogger("jieba").setLevel(logging.WARNING)
