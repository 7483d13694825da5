"""What the actions say, and the one place that shapes the ``custom`` payload of the contract.

The gateway reads ``custom.kind`` (never the wording) to type a reply, so wording can change here
freely; kinds, handoff fields and form fields cannot without changing docs/architecture.md.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from rasa_sdk.executor import CollectingDispatcher

Kind = Literal[
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
]

OFFER_HUMAN: list[dict[str, str]] = [{"title": "转人工", "payload": "/request_human"}]

HANDOFF_TEXT = "好的，正在为您转接人工客服，请稍候。"
COMPLAINT_TEXT = "非常抱歉给您带来了不好的体验。已为您优先转接人工客服处理，请稍候。"

CLARIFY = "抱歉，我没太明白您的意思。能换个说法，或者说得具体一点吗？比如遇到了什么问题、在哪一步。"
CLARIFY_OUT_OF_SCOPE = "抱歉，这个问题不在我的服务范围内。我可以帮您解答话费、流量、套餐、宽带等通信业务问题。"
CLARIFY_OFFER_HUMAN = "抱歉，我还是没能理解您的问题。需要为您转接人工客服吗？"

FEEDBACK_NEGATIVE = "抱歉这个回答没能帮到您，已记录您的反馈。您可以再具体描述一下遇到的情况。"
FEEDBACK_NEGATIVE_OFFER = "抱歉还是没能帮您解决，已记录您的反馈。需要为您转接人工客服吗？"
FEEDBACK_POSITIVE = "很高兴能帮到您，感谢您的反馈！"

HUMAN_DECLINED = "好的，那您还有其他问题可以随时问我。"

NOTICE_CONFIRMED = "好的，已记录您的确认，我们会按通知为您办理。"
NOTICE_DECLINED = "好的，已为您保留，暂不办理。之后需要时随时告诉我。"
NOTICE_NONE = "好的。目前没有需要您确认的事项，还有什么可以帮您？"

ASK_PHONE = "请留下方便接听的手机号码，我们会安排客服给您回电。"
ASK_SLOT = "请问什么时间方便接听？回电时间为每天9:00-21:00，例如“明天上午10点到11点”。"
CANCEL_HINT = "（不需要的话回复“算了”即可）"
CALLBACK_INTROS = {
    "after_hours": "现在不在人工在线服务时间，我们可以安排客服在服务时间内给您回电。",
    "no_agent": "目前人工客服都在忙，我们可以安排客服稍后给您回电。",
}
CALLBACK_PROBLEMS = {
    "phone_invalid": "这个号码好像不完整（手机号是11位）。",
    "phone_not_found": "没有看到电话号码哦。",
    "slot_not_found": "没有看懂您方便的时间。",
    "slot_outside_hours": "回电时间需要在每天9:00-21:00之间。",
    "slot_past": "这个时间已经过去了。",
    "slot_too_far": "回电最多可以预约两周以内的时间。",
}
PHONE_NOTED = "好的，回电号码 {phone}。"
SLOT_NOTED = "好的，回电时间已记下。"
CALLBACK_BOOKED = "已为您预约{day} {start}-{end}的电话回访，客服将致电 {phone}，请保持电话畅通。"
CALLBACK_CANCELLED = "好的，已取消回电预约。还有什么可以帮您？"
CALLBACK_CANCELLED_BYE = "好的，已取消回电预约。感谢您的咨询，再见！"


def say(dispatcher: CollectingDispatcher, kind: Kind, text: str, **extra: Any) -> None:
    """One bot message carrying the contract's ``custom`` payload; ``extra`` adds optional keys."""
    payload: dict[str, Any] = {"kind": kind, "text": text}
    payload.update({key: value for key, value in extra.items() if value is not None})
    dispatcher.utter_message(json_message=payload)


def handoff(tier: str, reason: str, priority: str = "normal") -> dict[str, str]:
    return {"tier": tier, "reason": reason, "priority": priority}


def form_field(field: str) -> dict[str, str]:
    return {"name": "callback", "field": field}


def mask_phone(phone: str) -> str:
    """Shown back to the customer: enough to recognise the number, not enough to leak it."""
    digits = phone.replace("-", "")
    if len(digits) == 11 and digits.startswith("1"):
        return f"{digits[:3]}****{digits[7:]}"
    return f"{phone[:-4]}****" if len(phone) > 4 else phone


def slot_day(start: datetime, now: datetime) -> str:
    days = (start.date() - now.date()).days
    named = {0: "今天", 1: "明天", 2: "后天"}.get(days)
    return f"{named}（{start.month}月{start.day}日）" if named else f"{start.month}月{start.day}日"
