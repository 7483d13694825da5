"""Which business event becomes which notice. Rules are data: the text comes from the knowledge base entry
when one exists (the same customer wording the bot and agents use), else from the rule's template."""

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any


@dataclass(frozen=True)
class Rule:
    event_type: str
    name: str
    # What the notice says: the KB entry's customer answer (preferred) and/or a template over event data.
    kb_id: str | None = None
    template: str = ""
    # A decision notice shows confirm / decline; `action` is what the billing system does on confirm.
    asks_decision: bool = False
    action: str | None = None
    # How long a decision stays open, and the per-customer dedup key (formatted with the event data).
    ttl: timedelta = timedelta(hours=24)
    dedup: str = "{type}"
    options: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    def text(self, data: dict[str, Any], kb_answer: str | None) -> str:
        """The notice text for this event's data."""
        lead = self.template.format_map(_Missing(data)) if self.template else ""
        return "\n".join(part for part in (lead, kb_answer or "") if part).strip()

    def dedup_key(self, data: dict[str, Any]) -> str:
        """The per-customer deduplication key of this event's notice."""
        return self.dedup.format_map(_Missing(data))[:160]


class _Missing(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return ""


DECISION_OPTIONS = (("确认关闭", "/notice_confirm"), ("暂不关闭", "/notice_decline"))

RULES: dict[str, Rule] = {
    rule.event_type: rule
    for rule in (
        Rule(
            event_type="roaming.returned_home",
            name="roaming_daypack_close",
            kb_id="KB0504",
            template="欢迎回到内地！您的{package}将在24小时内自动关闭。回复“确认”可立即关闭，回复“不用”则保留到自动关闭。",
            asks_decision=True,
            action="close_package",
            ttl=timedelta(hours=24),
            dedup="{type}:{package}",
            options=DECISION_OPTIONS,
        ),
        Rule(
            event_type="balance.low",
            name="low_balance",
            template="温馨提示：您的话费余额为{balance}元，已低于提醒线，为避免停机请及时充值。",
            dedup="{type}:{date}",
            ttl=timedelta(days=1),
        ),
        Rule(
            event_type="points.expiring",
            name="points_expiring",
            template="您有{points}积分将于{expire_on}到期，请尽快兑换。",
            dedup="{type}:{expire_on}",
            ttl=timedelta(days=30),
        ),
        Rule(
            event_type="package.expiring",
            name="package_expiring",
            template="您的{package}将于{expire_on}到期。",
            dedup="{type}:{package}:{expire_on}",
            ttl=timedelta(days=7),
        ),
    )
}


def by_name(name: str) -> Rule | None:
    """The rule that produces notices called `name`."""
    return next((rule for rule in RULES.values() if rule.name == name), None)
