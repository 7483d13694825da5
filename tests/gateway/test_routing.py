"""Who answers: the knowledge base or Rasa (pure decisions)."""

import pytest

from gateway.conversation.routing import DialogueState, Nlu, Route, anger, decide, is_angry_complaint

NONE = DialogueState()


@pytest.mark.parametrize(
    ("intent", "confidence", "kb_tier", "state", "expected"),
    [
        ("request_human", 0.9, "answer", NONE, Route.RASA),  # 转人工 beats KB1401 "how to reach a human"
        ("request_voice", 0.8, "suggest", NONE, Route.RASA),
        ("request_human", 0.3, "answer", NONE, Route.KB),  # unsure NLU does not override a sure answer
        ("request_voice", 0.6, "answer", NONE, Route.KB),  # nor does a middling one (打电话 in a fraud story)
        ("request_voice", 0.6, "suggest", NONE, Route.RASA),
        ("greet", 0.95, "none", NONE, Route.RASA),
        ("greet", 0.95, "answer", NONE, Route.KB),  # 你好，我想查话费 is a question
        ("affirm", 0.9, "answer", DialogueState(offered_human=True), Route.RASA),
        ("affirm", 0.9, "answer", NONE, Route.KB),
        ("notice_confirm", 0.9, "answer", DialogueState(pending_notice=True), Route.RASA),
        ("inform", 0.2, "answer", DialogueState(active_loop="callback_form"), Route.RASA),
        ("nlu_fallback", 0.0, "answer", NONE, Route.KB),
        ("nlu_fallback", 0.0, "suggest", NONE, Route.KB),
        ("nlu_fallback", 0.0, "none", NONE, Route.RASA),
        ("feedback_negative", 0.9, "none", DialogueState(last_kb_id="KB1204"), Route.RASA),
        ("feedback_negative", 0.9, "none", NONE, Route.RASA),
        ("out_of_scope", 0.9, "suggest", NONE, Route.RASA),
        ("out_of_scope", 0.9, "answer", NONE, Route.KB),
        ("unclear", 0.9, "suggest", NONE, Route.RASA),
    ],
)
def test_decide(intent: str, confidence: float, kb_tier: str, state: DialogueState, expected: Route) -> None:
    assert decide(text="x", nlu=Nlu(intent, confidence), kb_tier=kb_tier, kb_top="KB0101", state=state) is expected


def test_still_broken_after_an_answer_is_feedback_not_the_same_answer_again() -> None:
    state = DialogueState(last_kb_id="KB1204")
    nlu = Nlu("feedback_negative", 0.8)
    assert decide(text="还是登不上", nlu=nlu, kb_tier="answer", kb_top="KB1204", state=state) is Route.RASA
    assert decide(text="还是登不上", nlu=nlu, kb_tier="answer", kb_top="KB0301", state=state) is Route.KB


def test_complaint_question_goes_to_kb_but_angry_complaint_to_rasa() -> None:
    nlu = Nlu("complain", 0.9)
    assert (
        decide(text="上礼拜投诉的事到现在都没人回我", nlu=nlu, kb_tier="answer", kb_top="KB1408", state=NONE)
        is Route.KB
    )
    assert (
        decide(text="太离谱了，我要再投诉一次！", nlu=nlu, kb_tier="answer", kb_top="KB1408", state=NONE) is Route.RASA
    )


def test_anger_markers() -> None:
    assert anger("你们到底怎么回事？？又莫名扣我20块") == 1.0
    assert anger("请问怎么查话费") == 0.0
    assert is_angry_complaint("我要投诉刚才那个客服的态度")
    assert not is_angry_complaint("投诉进度在哪里查")


def test_a_follow_up_reading_answers_unless_the_customer_is_closing() -> None:
    state = DialogueState(last_kb_id="KB0503")
    kwargs = {"kb_tier": "none", "kb_top": None, "state": state, "follow_up_tier": "answer"}
    assert decide(text="那一天多少钱", nlu=Nlu("nlu_fallback", 0.0), **kwargs) is Route.KB  # type: ignore[arg-type]
    assert decide(text="好的谢谢，拜拜", nlu=Nlu("goodbye", 0.95), **kwargs) is Route.RASA  # type: ignore[arg-type]


def test_an_unsure_escalation_that_names_nobody_is_not_one() -> None:
    # DIET reads the 转 of 携转 as 转人工 (0.69): nobody to talk to is named and no human was offered.
    unsure = Nlu("request_human", 0.69)
    kwargs = {"kb_top": None, "state": NONE}
    assert decide(text="携转用的授权码去哪拿", nlu=unsure, kb_tier="none", **kwargs) is Route.CLARIFY  # type: ignore[arg-type]
    assert decide(text="携转用的授权码去哪拿", nlu=unsure, kb_tier="suggest", **kwargs) is Route.KB  # type: ignore[arg-type]
    assert decide(text="我要找客服", nlu=unsure, kb_tier="none", **kwargs) is Route.RASA  # type: ignore[arg-type]
    assert decide(text="帮我转", nlu=Nlu("request_human", 0.95), kb_tier="none", **kwargs) is Route.RASA  # type: ignore[arg-type]
    offered = DialogueState(offered_human=True)
    assert decide(text="那你帮我转吧", nlu=unsure, kb_tier="none", kb_top=None, state=offered) is Route.RASA


def test_asking_how_the_hotline_menu_reaches_a_human_is_a_question() -> None:
    sure = Nlu("request_human", 0.97)
    assert decide(text="10088按几能转到人工", nlu=sure, kb_tier="answer", kb_top="KB1401", state=NONE) is Route.KB
    assert decide(text="10088按几能转到人工", nlu=sure, kb_tier="none", kb_top=None, state=NONE) is Route.RASA
    assert decide(text="转人工", nlu=sure, kb_tier="answer", kb_top="KB1401", state=NONE) is Route.RASA
