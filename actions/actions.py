"""Kefu's custom actions: handoffs, the callback form, feedback, clarification and notice decisions.

Every reply goes through ``replies.say`` so it carries ``custom.kind``; every call to the gateway goes
through ``GatewayClient``. A gateway failure never loses a customer's request: handoffs are still
emitted (the gateway decides what to do with them), and what could not be recorded travels in the
payload with ``recorded: false``.
"""

from __future__ import annotations

import logging
import os
from abc import ABC, abstractmethod
from datetime import datetime
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, FollowupAction, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions import replies
from actions.gateway_client import Availability, GatewayClient, GatewayError
from actions.replies import say
from actions.timeslots import Slot, SlotProblem, looks_like_bad_phone, parse_phone, parse_slot, service_now

log = logging.getLogger(__name__)

if not os.environ.get("KEFU_INTERNAL_TOKEN", "").strip():
    # Said at start-up so the operator sees it at once; actions still answer (degraded) without it.
    log.error("KEFU_INTERNAL_TOKEN is not set: every call to the gateway will fail until it is")

FAILURE_COUNT = "failure_count"
OFFERED_HUMAN = "offered_human"
LAST_KB_ID = "last_kb_id"
PENDING_NOTICE = "pending_notice"
HUMAN_ROUTE = "human_route"
CALLBACK_PHONE = "callback_phone"
CALLBACK_START = "callback_slot_start"
CALLBACK_END = "callback_slot_end"
CALLBACK_REASON = "callback_reason"
CALLBACK_INTRO = "callback_intro"
CALLBACK_PROBLEM = "callback_problem"
REQUESTED_SLOT = "requested_slot"

# Intents that leave the callback form when nothing usable came with them (see ValidateCallbackForm).
FORM_EXITS = frozenset({"deny", "complain", "request_human", "goodbye"})
OFFER_AFTER_FAILURES = 2


def _intent(tracker: Tracker) -> str:
    return str((tracker.latest_message.get("intent") or {}).get("name") or "")


def _metadata(tracker: Tracker) -> dict[str, Any]:
    metadata = tracker.latest_message.get("metadata")
    return metadata if isinstance(metadata, dict) else {}


def _now(tracker: Tracker) -> datetime:
    return service_now(_metadata(tracker).get("now"))


def _failures(tracker: Tracker) -> int:
    try:
        return int(float(tracker.get_slot(FAILURE_COUNT) or 0))
    except (TypeError, ValueError):
        return 0


def _elderly(tracker: Tracker) -> bool:
    contact = _metadata(tracker).get("contact")
    return isinstance(contact, dict) and contact.get("elderly") is True


def _client() -> GatewayClient:
    return GatewayClient.from_env()


def _clear_callback() -> list[EventType]:
    return [
        SlotSet(name, None)
        for name in (CALLBACK_PHONE, CALLBACK_START, CALLBACK_END, CALLBACK_REASON, CALLBACK_INTRO, CALLBACK_PROBLEM)
    ]


def _resolved() -> list[EventType]:
    """The failure streak ends when the customer gets what they asked for."""
    return [SlotSet(FAILURE_COUNT, 0), SlotSet(OFFERED_HUMAN, False)]


class ActionRequestHuman(Action):
    """A human now if one is online; otherwise a callback (the rules start callback_form)."""

    def name(self) -> str:
        return "action_request_human"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[EventType]:
        reason = "repeated_failure" if tracker.get_slot(OFFERED_HUMAN) else "customer_request"
        availability: Availability | None
        try:
            availability = await _client().availability()
        except GatewayError as exc:
            # Without an answer the gateway decides (queue or callback): the request is not lost.
            log.warning("availability unknown, handing off anyway: %s", exc)
            availability = None
        if availability is None or availability.agents_online > 0:
            priority = "high" if _elderly(tracker) else "normal"
            say(
                dispatcher,
                "handoff",
                replies.HANDOFF_TEXT,
                handoff=replies.handoff("human_text", reason, priority),
            )
            return [*_resolved(), *_clear_callback(), SlotSet(HUMAN_ROUTE, "text")]
        closed = not availability.service_open
        return [
            *_resolved(),
            SlotSet(HUMAN_ROUTE, "callback"),
            SlotSet(CALLBACK_REASON, "after_hours" if closed else reason),
            SlotSet(CALLBACK_INTRO, "after_hours" if closed else "no_agent"),
        ]


class ActionComplaint(Action):
    """A complaint always reaches a human, first in line; the gateway queues it if nobody is online."""

    def name(self) -> str:
        return "action_complaint"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[EventType]:
        say(
            dispatcher,
            "handoff",
            replies.COMPLAINT_TEXT,
            handoff=replies.handoff("human_text", "complaint", "high"),
        )
        return [*_resolved(), *_clear_callback(), SlotSet(HUMAN_ROUTE, "text")]


class ActionClarify(Action):
    """Not understood (or out of scope): ask again, and offer a human from the second failure on."""

    def name(self) -> str:
        return "action_clarify"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[EventType]:
        count = _failures(tracker) + 1
        if count >= OFFER_AFTER_FAILURES:
            say(dispatcher, "clarify", replies.CLARIFY_OFFER_HUMAN, options=replies.OFFER_HUMAN)
            return [SlotSet(FAILURE_COUNT, count), SlotSet(OFFERED_HUMAN, True)]
        text = replies.CLARIFY_OUT_OF_SCOPE if _intent(tracker) == "out_of_scope" else replies.CLARIFY
        say(dispatcher, "clarify", text)
        return [SlotSet(FAILURE_COUNT, count)]


class ActionFeedbackNegative(Action):
    """The last KB answer did not help: record it, count the failure, offer a human at the second."""

    def name(self) -> str:
        return "action_feedback_negative"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[EventType]:
        count = _failures(tracker) + 1
        offer = count >= OFFER_AFTER_FAILURES
        events: list[EventType] = [SlotSet(FAILURE_COUNT, count)]
        if offer:
            events.append(SlotSet(OFFERED_HUMAN, True))
        if not tracker.get_slot(LAST_KB_ID):
            # Dissatisfaction with no answer to judge ("你们还没弄好") is a failure to understand.
            text = replies.CLARIFY_OFFER_HUMAN if offer else replies.CLARIFY
            say(dispatcher, "clarify", text, options=replies.OFFER_HUMAN if offer else None)
            return events
        recorded = await _record_feedback(tracker, helpful=False)
        text = replies.FEEDBACK_NEGATIVE_OFFER if offer else replies.FEEDBACK_NEGATIVE
        say(
            dispatcher,
            "feedback_recorded",
            text,
            options=replies.OFFER_HUMAN if offer else None,
            feedback={"helpful": False, "kb_id": tracker.get_slot(LAST_KB_ID), "recorded": recorded},
        )
        return events


async def _record_feedback(tracker: Tracker, *, helpful: bool) -> bool:
    """Tell the gateway; False when it cannot be reached (the reply payload then carries the record)."""
    try:
        await _client().feedback(tracker.sender_id, helpful=helpful)
    except GatewayError as exc:
        log.warning("feedback (helpful=%s) not recorded: %s", helpful, exc)
        return False
    return True


class ActionFeedbackPositive(Action):
    def name(self) -> str:
        return "action_feedback_positive"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[EventType]:
        recorded = await _record_feedback(tracker, helpful=True)
        say(
            dispatcher,
            "feedback_recorded",
            replies.FEEDBACK_POSITIVE,
            feedback={"helpful": True, "kb_id": tracker.get_slot(LAST_KB_ID), "recorded": recorded},
        )
        return _resolved()


class ActionDeclineHuman(Action):
    """The customer turned down the offered human: keep helping, start the count again."""

    def name(self) -> str:
        return "action_decline_human"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[EventType]:
        say(dispatcher, "info", replies.HUMAN_DECLINED)
        return _resolved()


class ActionNoticeDecision(Action):
    """The customer's answer to a proactive notice (or to a bare 好的/不用 while one is pending)."""

    def name(self) -> str:
        return "action_notice_decision"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[EventType]:
        decision = "confirm" if _intent(tracker) in ("notice_confirm", "affirm") else "decline"
        pending = tracker.get_slot(PENDING_NOTICE)
        if not pending and tracker.get_slot(OFFERED_HUMAN):
            # No notice but a human on offer: "确认"/"不用" answers that offer.
            follow = "action_request_human" if decision == "confirm" else "action_decline_human"
            return [FollowupAction(follow)]
        kind: replies.Kind = "notice_confirmed" if decision == "confirm" else "notice_declined"
        text = replies.NOTICE_CONFIRMED if decision == "confirm" else replies.NOTICE_DECLINED
        try:
            result = await _client().notice_decision(tracker.sender_id, decision=decision)
        except GatewayError as exc:
            if exc.status == 404:
                say(dispatcher, "info", replies.NOTICE_NONE)
                return [SlotSet(PENDING_NOTICE, None)]
            # The decision travels in the payload so the gateway can still apply it.
            log.warning("notice decision not recorded: %s", exc)
            say(dispatcher, kind, text, notice={"decision": decision, "notice": pending, "recorded": False})
            return [SlotSet(PENDING_NOTICE, None)]
        notice = {"decision": decision, "notice": pending, "notice_id": result.get("notice_id"), "recorded": True}
        say(dispatcher, kind, text, notice=notice)
        return [SlotSet(PENDING_NOTICE, None)]


class ValidateCallbackForm(Action):
    """Reads phone and slot from whatever the customer wrote, in one message or two.

    Not a FormValidationAction: the slots have custom mappings and this action extracts them itself
    from the text, whichever slot was asked. Returning nothing makes Rasa reject the form for this
    turn, which lets the rules handle 算了 / 投诉 / 转人工 / 再见; anything else unusable keeps the form
    and re-asks with the reason (``callback_problem``).
    """

    def name(self) -> str:
        return "validate_callback_form"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[EventType]:
        text = str(tracker.latest_message.get("text") or "")
        requested = tracker.get_slot(REQUESTED_SLOT)
        if requested is None and tracker.get_slot(CALLBACK_PROBLEM):
            # Re-opened after the gateway refused the booking: the last message was already used,
            # reading it again would book the refused slot again.
            return []
        events: list[EventType] = []
        problem: str | None = None
        phone = parse_phone(text)
        if phone:
            events.append(SlotSet(CALLBACK_PHONE, phone))
        elif requested == CALLBACK_PHONE and looks_like_bad_phone(text):
            problem = "phone_invalid"
        slot = parse_slot(text, _now(tracker))
        if isinstance(slot, Slot):
            events += [
                SlotSet(CALLBACK_START, slot.start.isoformat(timespec="minutes")),
                SlotSet(CALLBACK_END, slot.end.isoformat(timespec="minutes")),
            ]
        elif slot is not SlotProblem.NOT_FOUND:
            problem = problem or slot.value
        if not events:
            if _intent(tracker) in FORM_EXITS:
                return []
            if requested is None:
                # The message that started the form ("给我回个电话") is not an answer to anything yet.
                return [SlotSet(CALLBACK_PROBLEM, problem)]
            problem = problem or ("phone_not_found" if requested == CALLBACK_PHONE else "slot_not_found")
        return [*events, SlotSet(CALLBACK_PROBLEM, problem)]


class _AskCallback(Action, ABC):
    """Form questions as actions (not responses) so they can carry the intro and the reason."""

    field = ""

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[EventType]:
        intro = replies.CALLBACK_INTROS.get(str(tracker.get_slot(CALLBACK_INTRO) or ""), "")
        problem = replies.CALLBACK_PROBLEMS.get(str(tracker.get_slot(CALLBACK_PROBLEM) or ""), "")
        say(dispatcher, "form", intro + problem + self.question(tracker), form=replies.form_field(self.field))
        return [SlotSet(CALLBACK_INTRO, None), SlotSet(CALLBACK_PROBLEM, None)]

    @abstractmethod
    def question(self, tracker: Tracker) -> str: ...


class ActionAskCallbackPhone(_AskCallback):
    field = "phone"

    def name(self) -> str:
        return "action_ask_callback_phone"

    def question(self, tracker: Tracker) -> str:
        # The time may come first ("明天下午两点"): say it was kept, so the customer need not repeat it.
        kept = replies.SLOT_NOTED if tracker.get_slot(CALLBACK_START) and not tracker.get_slot(CALLBACK_PROBLEM) else ""
        return kept + replies.ASK_PHONE + replies.CANCEL_HINT


class ActionAskCallbackSlot(_AskCallback):
    field = "slot"

    def name(self) -> str:
        return "action_ask_callback_slot_start"

    def question(self, tracker: Tracker) -> str:
        phone = tracker.get_slot(CALLBACK_PHONE)
        # Confirm the number once, when it was just taken; a re-ask leads with its reason instead.
        if phone and not tracker.get_slot(CALLBACK_PROBLEM):
            return replies.PHONE_NOTED.format(phone=replies.mask_phone(phone)) + replies.ASK_SLOT
        return replies.ASK_SLOT


class ActionSubmitCallback(Action):
    """Books the callback with the gateway and hands the conversation to the voice tier."""

    def name(self) -> str:
        return "action_submit_callback"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[EventType]:
        phone = str(tracker.get_slot(CALLBACK_PHONE) or "")
        start = str(tracker.get_slot(CALLBACK_START) or "")
        end = str(tracker.get_slot(CALLBACK_END) or "")
        reason = str(tracker.get_slot(CALLBACK_REASON) or "customer_request")
        callback: dict[str, Any] = {"phone": phone, "slot_start": start, "slot_end": end}
        try:
            result = await _client().callback(tracker.sender_id, phone=phone, slot_start=start, slot_end=end)
            callback.update(callback_id=result.get("callback_id"), recorded=True)
        except GatewayError as exc:
            if exc.status == 422:
                # The gateway's rules win over ours: ask again for what it refused.
                log.info("callback refused by the gateway: %s %s", exc, exc.body)
                wrong_phone = "phone" in str(exc.body).lower()
                retry: list[EventType] = (
                    [SlotSet(CALLBACK_PHONE, None), SlotSet(CALLBACK_PROBLEM, "phone_invalid")]
                    if wrong_phone
                    else [
                        SlotSet(CALLBACK_START, None),
                        SlotSet(CALLBACK_END, None),
                        SlotSet(CALLBACK_PROBLEM, "slot_outside_hours"),
                    ]
                )
                return [*retry, FollowupAction("callback_form")]
            # The booking travels in the payload: the gateway can still create it.
            log.warning("callback not recorded, handing off with the booking: %s", exc)
            callback["recorded"] = False
        text = _booked_text(phone, start, end, _now(tracker))
        say(
            dispatcher,
            "handoff",
            text,
            handoff=replies.handoff("human_voice", reason),
            callback=callback,
        )
        return [*_resolved(), *_clear_callback(), SlotSet(HUMAN_ROUTE, None)]


def _booked_text(phone: str, start: str, end: str, now: datetime) -> str:
    try:
        begins, ends = datetime.fromisoformat(start), datetime.fromisoformat(end)
    except ValueError:
        return replies.CALLBACK_BOOKED.format(day="", start=start, end=end, phone=replies.mask_phone(phone))
    return replies.CALLBACK_BOOKED.format(
        day=replies.slot_day(begins, now.astimezone(begins.tzinfo)),
        start=begins.strftime("%H:%M"),
        end=ends.strftime("%H:%M"),
        phone=replies.mask_phone(phone),
    )


class ActionCancelCallback(Action):
    """After the rules deactivated the form on 算了 (or 再见): forget the half-filled booking."""

    def name(self) -> str:
        return "action_cancel_callback"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[EventType]:
        if _intent(tracker) == "goodbye":
            say(dispatcher, "goodbye", replies.CALLBACK_CANCELLED_BYE)
        else:
            say(dispatcher, "info", replies.CALLBACK_CANCELLED)
        return [*_clear_callback(), SlotSet(REQUESTED_SLOT, None), SlotSet(HUMAN_ROUTE, None)]
