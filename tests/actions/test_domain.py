"""The domain and the action server agree: every action the bot may call exists, every reply is typed."""

from pathlib import Path
from typing import Any

import yaml
from rasa_sdk.executor import ActionExecutor

BOT = Path(__file__).resolve().parents[2] / "bot"
KINDS = {
    "greet",
    "thanks",
    "goodbye",
    "clarify",
    "handoff",
    "form",
    "feedback_recorded",
    "notice_confirmed",
    "notice_declined",
    "info",
}


def _domain() -> dict[str, Any]:
    return yaml.safe_load((BOT / "domain.yml").read_text(encoding="utf-8"))


def test_every_domain_action_is_served(executor: ActionExecutor) -> None:
    assert set(_domain()["actions"]) == set(executor.actions)


def test_every_response_carries_a_contract_kind_and_text() -> None:
    for name, variants in _domain()["responses"].items():
        for variant in variants:
            custom = variant.get("custom") or {}
            assert custom.get("kind") in KINDS, name
            assert custom.get("text"), name


def test_the_form_questions_are_actions() -> None:
    domain = _domain()
    for slot in domain["forms"]["callback_form"]["required_slots"]:
        assert f"action_ask_{slot}" in domain["actions"]
