"""Every custom action, run through rasa-sdk's executor against a fake gateway on 127.0.0.1."""

import pytest
from conftest import FakeGateway, run, tracker
from rasa_sdk.executor import ActionExecutor

AVAILABILITY = "/api/v1/internal/availability"
FEEDBACK = "/api/v1/internal/conversations/conv-1/feedback"
CALLBACKS = "/api/v1/internal/conversations/conv-1/callbacks"
NOTICE = "/api/v1/internal/conversations/conv-1/notice-decision"
OFFER = [{"title": "转人工", "payload": "/request_human"}]


def online(gateway: FakeGateway, agents: int, *, open_: bool = True) -> None:
    gateway.reply("GET", AVAILABILITY, 200, {"agents_online": agents, "service_open": open_, "queue_length": 0})


# -- handoff ---------------------------------------------------------------------------------------


async def test_human_when_an_agent_is_online(executor: ActionExecutor, gateway: FakeGateway) -> None:
    online(gateway, 1)
    result = await run(executor, "action_request_human", tracker(text="转人工", intent="request_human"))
    assert result.only["kind"] == "handoff"
    assert result.only["handoff"] == {"tier": "human_text", "reason": "customer_request", "priority": "normal"}
    assert result.slots()["human_route"] == "text"
    assert result.slots()["failure_count"] == 0


async def test_accepting_an_offered_human_is_a_repeated_failure(executor: ActionExecutor, gateway: FakeGateway) -> None:
    online(gateway, 3)
    state = tracker(text="好的", intent="affirm", slots={"offered_human": True, "failure_count": 2.0})
    result = await run(executor, "action_request_human", state)
    assert result.only["handoff"]["reason"] == "repeated_failure"
    assert result.slots()["offered_human"] is False


async def test_after_hours_turns_into_a_callback(executor: ActionExecutor, gateway: FakeGateway) -> None:
    online(gateway, 0, open_=False)
    result = await run(executor, "action_request_human", tracker(text="转人工", intent="request_human"))
    # Silent: the callback form that the rules start next asks the first question.
    assert result.responses == []
    assert result.slots()["human_route"] == "callback"
    assert result.slots()["callback_reason"] == "after_hours"
    assert result.slots()["callback_intro"] == "after_hours"


async def test_busy_service_turns_into_a_callback_for_the_customer(
    executor: ActionExecutor, gateway: FakeGateway
) -> None:
    online(gateway, 0, open_=True)
    result = await run(executor, "action_request_human", tracker(text="人工", intent="request_human"))
    assert result.slots()["human_route"] == "callback"
    assert result.slots()["callback_reason"] == "customer_request"
    assert result.slots()["callback_intro"] == "no_agent"


@pytest.mark.usefixtures("dead_gateway")
async def test_gateway_down_still_hands_off(executor: ActionExecutor) -> None:
    result = await run(executor, "action_request_human", tracker(text="转人工", intent="request_human"))
    assert result.only["kind"] == "handoff"
    assert result.only["handoff"]["tier"] == "human_text"
    assert result.slots()["human_route"] == "text"


async def test_missing_token_still_hands_off(executor: ActionExecutor, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KEFU_INTERNAL_TOKEN", raising=False)
    result = await run(executor, "action_request_human", tracker(text="转人工", intent="request_human"))
    assert result.only["kind"] == "handoff"


async def test_complaint_is_a_high_priority_text_handoff(executor: ActionExecutor, gateway: FakeGateway) -> None:
    result = await run(executor, "action_complaint", tracker(text="我要投诉", intent="complain"))
    assert result.only["kind"] == "handoff"
    assert result.only["handoff"] == {"tier": "human_text", "reason": "complaint", "priority": "high"}
    assert gateway.requests == []


# -- failures, feedback, clarification ------------------------------------------------------------


async def test_negative_feedback_is_recorded_then_offers_a_human(
    executor: ActionExecutor, gateway: FakeGateway
) -> None:
    gateway.reply("POST", FEEDBACK, 200, {"recorded": True, "kb_id": "KB1204"})
    first = await run(
        executor, "action_feedback_negative", tracker(intent="feedback_negative", slots={"last_kb_id": "KB1204"})
    )
    assert first.only["kind"] == "feedback_recorded"
    assert "options" not in first.only
    assert first.slots() == {"failure_count": 1}

    state = tracker(intent="feedback_negative", slots={"last_kb_id": "KB1204", "failure_count": 1.0})
    second = await run(executor, "action_feedback_negative", state)
    assert second.only["kind"] == "feedback_recorded"
    assert second.only["options"] == OFFER
    assert second.slots() == {"failure_count": 2, "offered_human": True}
    assert [c.body for c in gateway.calls("POST", FEEDBACK)] == [{"helpful": False}, {"helpful": False}]


async def test_negative_feedback_without_an_answer_is_a_clarification(
    executor: ActionExecutor, gateway: FakeGateway
) -> None:
    result = await run(executor, "action_feedback_negative", tracker(intent="feedback_negative"))
    assert result.only["kind"] == "clarify"
    assert gateway.requests == []
    assert result.slots()["failure_count"] == 1


@pytest.mark.usefixtures("dead_gateway")
async def test_negative_feedback_answers_even_if_the_gateway_is_down(executor: ActionExecutor) -> None:
    result = await run(
        executor, "action_feedback_negative", tracker(intent="feedback_negative", slots={"last_kb_id": "KB1"})
    )
    assert result.only["kind"] == "feedback_recorded"
    assert result.only["feedback"]["recorded"] is False


async def test_positive_feedback_is_recorded(executor: ActionExecutor, gateway: FakeGateway) -> None:
    gateway.reply("POST", FEEDBACK, 200, {"recorded": True, "kb_id": "KB0101"})
    state = tracker(intent="feedback_positive", slots={"last_kb_id": "KB0101", "failure_count": 1.0})
    result = await run(executor, "action_feedback_positive", state)
    assert result.only["kind"] == "feedback_recorded"
    assert gateway.calls("POST", FEEDBACK)[0].body == {"helpful": True}
    assert result.slots()["failure_count"] == 0


async def test_second_consecutive_clarification_offers_a_human(executor: ActionExecutor) -> None:
    first = await run(executor, "action_clarify", tracker(text="就那个", intent="unclear"))
    assert first.only["kind"] == "clarify"
    assert "options" not in first.only
    assert first.slots() == {"failure_count": 1}

    second = await run(
        executor, "action_clarify", tracker(text="你懂的", intent="nlu_fallback", slots={"failure_count": 1.0})
    )
    assert second.only["kind"] == "clarify"
    assert second.only["options"] == OFFER
    assert second.slots() == {"failure_count": 2, "offered_human": True}


async def test_out_of_scope_is_a_clarification_too(executor: ActionExecutor) -> None:
    result = await run(executor, "action_clarify", tracker(text="今天天气", intent="out_of_scope"))
    assert result.only["kind"] == "clarify"


async def test_declining_the_human_resets_the_streak(executor: ActionExecutor) -> None:
    state = tracker(intent="deny", slots={"offered_human": True, "failure_count": 2.0})
    result = await run(executor, "action_decline_human", state)
    assert result.only["kind"] == "info"
    assert result.slots() == {"failure_count": 0, "offered_human": False}


# -- notices ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("intent", "decision", "kind"),
    [
        ("notice_confirm", "confirm", "notice_confirmed"),
        ("affirm", "confirm", "notice_confirmed"),
        ("notice_decline", "decline", "notice_declined"),
        ("deny", "decline", "notice_declined"),
    ],
)
async def test_notice_decision(
    executor: ActionExecutor, gateway: FakeGateway, intent: str, decision: str, kind: str
) -> None:
    gateway.reply("POST", NOTICE, 200, {"notice_id": 3, "status": f"{decision}ed"})
    state = tracker(intent=intent, slots={"pending_notice": "roaming_daypack_close"})
    result = await run(executor, "action_notice_decision", state)
    assert gateway.calls("POST", NOTICE)[0].body == {"decision": decision}
    assert result.only["kind"] == kind
    assert result.only["notice"]["recorded"] is True
    assert result.slots() == {"pending_notice": None}


async def test_no_pending_notice_is_just_information(executor: ActionExecutor, gateway: FakeGateway) -> None:
    gateway.reply("POST", NOTICE, 404, {"detail": "no notice is waiting for a decision"})
    result = await run(executor, "action_notice_decision", tracker(text="确认", intent="notice_confirm"))
    assert result.only["kind"] == "info"


@pytest.mark.usefixtures("dead_gateway")
async def test_notice_decision_travels_in_the_payload_when_the_gateway_is_down(executor: ActionExecutor) -> None:
    state = tracker(intent="notice_confirm", slots={"pending_notice": "roaming_daypack_close"})
    result = await run(executor, "action_notice_decision", state)
    assert result.only["kind"] == "notice_confirmed"
    assert result.only["notice"] == {"decision": "confirm", "notice": "roaming_daypack_close", "recorded": False}


async def test_confirm_without_a_notice_answers_the_offered_human(
    executor: ActionExecutor, gateway: FakeGateway
) -> None:
    state = tracker(text="确认", intent="notice_confirm", slots={"offered_human": True})
    result = await run(executor, "action_notice_decision", state)
    assert result.followup() == "action_request_human"
    assert result.responses == []
    assert gateway.requests == []
    declined = await run(
        executor, "action_notice_decision", tracker(intent="notice_decline", slots={"offered_human": True})
    )
    assert declined.followup() == "action_decline_human"


# -- callback form ---------------------------------------------------------------------------------


def form_state(
    text: str, intent: str = "inform", *, requested: str = "callback_phone", now: str | None = None, **slots: object
) -> dict:
    state = tracker(
        text=text,
        intent=intent,
        slots={"requested_slot": requested, **slots},
        active_loop="callback_form",
        now=now or "2025-11-22T23:10:00+08:00",
    )
    return state


async def test_phone_then_slot_in_two_messages(executor: ActionExecutor) -> None:
    first = await run(executor, "validate_callback_form", form_state("13800138000"))
    assert first.slots() == {"callback_phone": "13800138000", "callback_problem": None}

    second = await run(
        executor,
        "validate_callback_form",
        form_state("明天上午10点到11点", requested="callback_slot_start", callback_phone="13800138000"),
    )
    assert second.slots() == {
        "callback_slot_start": "2025-11-23T10:00+08:00",
        "callback_slot_end": "2025-11-23T11:00+08:00",
        "callback_problem": None,
    }


async def test_phone_and_slot_in_one_message(executor: ActionExecutor) -> None:
    state = form_state("打13800138000就行，明早9点到10点之间", now="2025-11-23T01:30:00+08:00")
    result = await run(executor, "validate_callback_form", state)
    assert result.slots() == {
        "callback_phone": "13800138000",
        "callback_slot_start": "2025-11-23T09:00+08:00",
        "callback_slot_end": "2025-11-23T10:00+08:00",
        "callback_problem": None,
    }


async def test_a_slot_outside_service_hours_is_asked_again_with_the_reason(executor: ActionExecutor) -> None:
    state = form_state("明天晚上10点", requested="callback_slot_start", callback_phone="13800138000")
    result = await run(executor, "validate_callback_form", state)
    assert result.slots() == {"callback_problem": "slot_outside_hours"}


async def test_a_short_number_is_asked_again(executor: ActionExecutor) -> None:
    result = await run(executor, "validate_callback_form", form_state("1380013800"))
    assert result.slots() == {"callback_problem": "phone_invalid"}


async def test_something_unusable_keeps_the_form(executor: ActionExecutor) -> None:
    result = await run(executor, "validate_callback_form", form_state("这个要多久", intent="faq"))
    assert result.slots() == {"callback_problem": "phone_not_found"}


async def test_the_message_that_opens_the_form_is_no_failed_answer(executor: ActionExecutor) -> None:
    state = form_state("打字说不清楚，你们打电话给我吧", intent="request_voice", requested=None)
    result = await run(executor, "validate_callback_form", state)
    assert result.slots() == {"callback_problem": None}


async def test_the_opening_message_may_already_carry_the_phone(executor: ActionExecutor) -> None:
    state = form_state("给我回电话，13800138000", intent="request_voice", requested=None)
    result = await run(executor, "validate_callback_form", state)
    assert result.slots()["callback_phone"] == "13800138000"


async def test_reopened_after_a_refusal_the_old_message_is_not_read_again(executor: ActionExecutor) -> None:
    state = form_state(
        "13800138000，明天上午10点",
        requested=None,
        callback_phone="13800138000",
        callback_problem="slot_outside_hours",
    )
    result = await run(executor, "validate_callback_form", state)
    assert result.events == []


@pytest.mark.parametrize("intent", ["deny", "complain", "request_human", "goodbye"])
async def test_leaving_intents_release_the_form(executor: ActionExecutor, intent: str) -> None:
    # No events: Rasa rejects the form for this turn and the rules take over.
    result = await run(executor, "validate_callback_form", form_state("算了不用了", intent=intent))
    assert result.events == [] and result.responses == []


async def test_form_questions_name_their_field(executor: ActionExecutor) -> None:
    state = tracker(slots={"callback_intro": "after_hours", "callback_problem": None}, active_loop="callback_form")
    phone = await run(executor, "action_ask_callback_phone", state)
    assert phone.only["kind"] == "form"
    assert phone.only["form"] == {"name": "callback", "field": "phone"}
    assert phone.slots() == {"callback_intro": None, "callback_problem": None}

    state = tracker(
        slots={"callback_phone": "13800138000", "callback_problem": "slot_past"}, active_loop="callback_form"
    )
    slot = await run(executor, "action_ask_callback_slot_start", state)
    assert slot.only["kind"] == "form"
    assert slot.only["form"] == {"name": "callback", "field": "slot"}
    assert "13800138000" not in slot.only["text"]


def filled(reason: str | None = "after_hours") -> dict:
    return tracker(
        slots={
            "callback_phone": "13800138000",
            "callback_slot_start": "2025-11-23T10:00+08:00",
            "callback_slot_end": "2025-11-23T11:00+08:00",
            "callback_reason": reason,
        },
        now="2025-11-22T23:10:00+08:00",
    )


async def test_submit_books_the_callback_and_hands_off_to_voice(executor: ActionExecutor, gateway: FakeGateway) -> None:
    gateway.reply("POST", CALLBACKS, 200, {"callback_id": 7})
    result = await run(executor, "action_submit_callback", filled())
    assert gateway.calls("POST", CALLBACKS)[0].body == {
        "phone": "13800138000",
        "slot_start": "2025-11-23T10:00+08:00",
        "slot_end": "2025-11-23T11:00+08:00",
    }
    assert result.only["kind"] == "handoff"
    assert result.only["handoff"] == {"tier": "human_voice", "reason": "after_hours", "priority": "normal"}
    assert result.only["callback"]["callback_id"] == 7
    assert result.slots()["callback_phone"] is None and result.slots()["callback_slot_start"] is None


async def test_submit_without_a_reason_is_a_customer_request(executor: ActionExecutor, gateway: FakeGateway) -> None:
    gateway.reply("POST", CALLBACKS, 200, {"callback_id": 8})
    result = await run(executor, "action_submit_callback", filled(reason=None))
    assert result.only["handoff"]["reason"] == "customer_request"


async def test_submit_refused_by_the_gateway_asks_for_the_slot_again(
    executor: ActionExecutor, gateway: FakeGateway
) -> None:
    gateway.reply("POST", CALLBACKS, 422, {"detail": "slot must lie within 09:00-21:00"})
    result = await run(executor, "action_submit_callback", filled())
    assert result.responses == []
    assert result.followup() == "callback_form"
    assert result.slots() == {
        "callback_slot_start": None,
        "callback_slot_end": None,
        "callback_problem": "slot_outside_hours",
    }


@pytest.mark.usefixtures("dead_gateway")
async def test_submit_with_the_gateway_down_hands_off_with_the_booking(executor: ActionExecutor) -> None:
    result = await run(executor, "action_submit_callback", filled())
    assert result.only["kind"] == "handoff"
    assert result.only["handoff"]["tier"] == "human_voice"
    assert result.only["callback"] == {
        "phone": "13800138000",
        "slot_start": "2025-11-23T10:00+08:00",
        "slot_end": "2025-11-23T11:00+08:00",
        "recorded": False,
    }


@pytest.mark.parametrize(("intent", "kind"), [("deny", "info"), ("goodbye", "goodbye")])
async def test_cancel_forgets_the_half_filled_booking(executor: ActionExecutor, intent: str, kind: str) -> None:
    state = tracker(intent=intent, slots={"callback_phone": "13800138000"})
    result = await run(executor, "action_cancel_callback", state)
    assert result.only["kind"] == kind
    assert result.slots()["callback_phone"] is None
    assert result.slots()["requested_slot"] is None
