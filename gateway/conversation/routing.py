"""Who answers a customer message: the knowledge base or Rasa. Pure decisions, no I/O."""

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

# Commands that always win over an FAQ answer when NLU is confident enough.
ESCALATIONS = frozenset({"request_human", "request_voice"})
SMALL_TALK = frozenset({"greet", "thank", "goodbye"})
# Weather or flights, and messages with nothing to go on ("弄不了啊"): Rasa clarifies instead of
# offering unrelated entries.
OUT_OF_SCOPE = frozenset({"out_of_scope", "unclear"})
DECISIONS = frozenset({"affirm", "deny", "notice_confirm", "notice_decline"})
FEEDBACK = frozenset({"feedback_negative", "feedback_positive"})
DIALOGUE = ESCALATIONS | SMALL_TALK | DECISIONS | FEEDBACK | OUT_OF_SCOPE | {"complain"}

# "我要投诉" is a command; "上礼拜投诉的事…" is a question about a complaint, which the KB answers.
_EXPLICIT_COMPLAINT = re.compile(
    r"(我|我们)?(要|想|必须|得)(再)?(去)?投诉|投诉[!！]|投诉(你们|他|她|这|那|客服)|举报你们"
)
# Someone to talk to. DIET also reads 转 in 携转 / 转账 / 转网 as 转人工: an unsure escalation that
# names nobody and answers no offer of a human is not one.
_NAMES_A_HUMAN = re.compile(r"人|客服|坐席|接线|专员|小姐姐|经理|领导|agent|human|rengong", re.I)
# A service line's number or its keypad: "10088按几能转到人工" asks how the phone menu works, which the
# KB answers; it is not a request to be transferred in this chat.
_PHONE_MENU = re.compile(r"(?<!\d)(100\d\d|95\d{3})(?!\d)|按几|按哪|按什么键|拨几")
_ANGER_MARKERS = re.compile(
    r"[!！]{2,}|[?？]{2,}|到底|怎么回事|太离谱|离谱|垃圾|骗子|坑人|气死|受够|第[二三四五]次|又[扣乱]|凭什么|什么破"
)


class Route(StrEnum):
    KB = "kb"
    RASA = "rasa"
    # Rasa clarifies without trusting its reading of the message (an unsure escalation).
    CLARIFY = "clarify"


@dataclass(frozen=True)
class Nlu:
    intent: str
    confidence: float

    @classmethod
    def from_parse(cls, data: dict[str, Any]) -> "Nlu":
        intent = data.get("intent") or {}
        return cls(intent=str(intent.get("name") or "nlu_fallback"), confidence=float(intent.get("confidence") or 0))


@dataclass(frozen=True)
class DialogueState:
    active_loop: str | None = None
    pending_notice: bool = False
    offered_human: bool = False
    last_kb_id: str | None = None

    @classmethod
    def from_tracker(cls, tracker: dict[str, Any]) -> "DialogueState":
        slots = tracker.get("slots") or {}
        loop = (tracker.get("active_loop") or {}).get("name")
        return cls(
            active_loop=loop or None,
            pending_notice=bool(slots.get("pending_notice")),
            offered_human=bool(slots.get("offered_human")),
            last_kb_id=slots.get("last_kb_id") or None,
        )


def anger(text: str) -> float:
    """A rough 0..1 anger score from punctuation and wording (keyword monitoring, not a model)."""
    hits = len(_ANGER_MARKERS.findall(text))
    return min(1.0, hits / 2)


def is_angry_complaint(text: str) -> bool:
    """An explicit complaint, or a complaint said in anger."""
    return bool(_EXPLICIT_COMPLAINT.search(text)) or ("投诉" in text and anger(text) >= 0.5)


def _escalation_meant(text: str, nlu: Nlu, state: DialogueState, sure: float) -> bool:
    return nlu.confidence >= sure or state.offered_human or bool(_NAMES_A_HUMAN.search(text))


def decide(
    *,
    text: str,
    nlu: Nlu,
    kb_tier: str,
    kb_top: str | None,
    state: DialogueState,
    follow_up_tier: str | None = None,
    command_min: float = 0.5,
    small_talk_min: float = 0.6,
    over_answer_min: float = 0.8,
) -> Route:
    """The knowledge base answers questions; Rasa handles dialogue and whatever the KB cannot answer."""
    if state.active_loop:
        return Route.RASA
    confident = nlu.confidence >= command_min
    if nlu.intent in ESCALATIONS and kb_tier == "answer" and _PHONE_MENU.search(text):
        return Route.KB
    if nlu.intent == "request_human" and confident and not _escalation_meant(text, nlu, state, over_answer_min):
        return Route.KB if kb_tier in ("answer", "suggest") else Route.CLARIFY
    # Against a sure KB answer an escalation must be sure too: "有人打电话说是公安局的…" is a fraud question
    # that merely mentions a phone call (NLU: request_voice 0.61), "转人工" is an escalation (1.0).
    if nlu.intent in ESCALATIONS and confident and (kb_tier != "answer" or nlu.confidence >= over_answer_min):
        return Route.RASA
    if nlu.intent == "complain" and confident and (is_angry_complaint(text) or kb_tier != "answer"):
        return Route.RASA
    if nlu.intent in DECISIONS and confident and (state.pending_notice or state.offered_human):
        return Route.RASA
    # "Still not working" after an answer is feedback on it, even when the KB would answer it again.
    repeats_last = kb_tier != "answer" or kb_top == state.last_kb_id
    if nlu.intent in FEEDBACK and confident and state.last_kb_id and repeats_last:
        return Route.RASA
    if nlu.intent in SMALL_TALK and nlu.confidence >= small_talk_min and kb_tier != "answer":
        return Route.RASA
    if nlu.intent in OUT_OF_SCOPE and nlu.confidence >= small_talk_min and kb_tier != "answer":
        return Route.RASA
    if kb_tier in ("answer", "suggest"):
        return Route.KB
    # A follow-up answer (read with the previous question) must not swallow "好的谢谢，拜拜".
    dialogue = nlu.intent in DIALOGUE and nlu.confidence >= small_talk_min
    if follow_up_tier == "answer" and not dialogue:
        return Route.KB
    return Route.RASA
