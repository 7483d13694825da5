from datetime import datetime, timedelta, timezone

import pytest

from actions.timeslots import Slot, SlotProblem, looks_like_bad_phone, parse_phone, parse_slot, service_now

CST = timezone(timedelta(hours=8))
AFTERNOON = datetime(2025, 11, 22, 14, 0, tzinfo=CST)  # a Saturday
LATE_NIGHT = datetime(2025, 11, 22, 23, 10, tzinfo=CST)
WEE_HOURS = datetime(2025, 11, 23, 1, 30, tzinfo=CST)


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2025, 11, day, hour, minute, tzinfo=CST)


@pytest.mark.parametrize(
    ("text", "phone"),
    [
        ("13800138000", "13800138000"),
        ("打13800138000就行，明早9点到10点之间", "13800138000"),
        ("我手机 139 1234 5678", "13912345678"),
        ("+86 186-1234-5678 谢谢", "18612345678"),
        ("１３８００１３８０００", "13800138000"),
        ("一三八零零一三八零零零", "13800138000"),
        ("座机 021-66668888", "021-66668888"),
        ("明天上午10点到11点", None),
        ("12800138000", None),
        ("", None),
    ],
)
def test_phone(text: str, phone: str | None) -> None:
    assert parse_phone(text) == phone


def test_a_short_number_is_reported_as_a_bad_phone_not_ignored() -> None:
    assert looks_like_bad_phone("1380013800")
    assert not looks_like_bad_phone("13800138000")
    assert not looks_like_bad_phone("明天10点")


@pytest.mark.parametrize(
    ("text", "now", "start", "end"),
    [
        ("明天上午10点到11点", LATE_NIGHT, at(23, 10), at(23, 11)),
        ("13800138000，今天下午3点到4点", AFTERNOON, at(22, 15), at(22, 16)),
        ("明早9点到10点之间", AFTERNOON, at(23, 9), at(23, 10)),
        # At 1:30 a.m. the coming morning is still "明早".
        ("打13800138000就行，明早9点到10点之间", WEE_HOURS, at(23, 9), at(23, 10)),
        ("明天十点到十一点", AFTERNOON, at(23, 10), at(23, 11)),
        ("後天下午兩點", AFTERNOON, at(24, 14), at(24, 15)),
        ("明天三点半", AFTERNOON, at(23, 15, 30), at(23, 16, 30)),
        ("明天九点一刻", AFTERNOON, at(23, 9, 15), at(23, 10, 15)),
        ("明天3-4点", AFTERNOON, at(23, 15), at(23, 16)),
        ("明天 9:30-10:30", AFTERNOON, at(23, 9, 30), at(23, 10, 30)),
        ("明天中午12点到1点", AFTERNOON, at(23, 12), at(23, 13)),
        ("今晚8点", AFTERNOON, at(22, 20), at(22, 21)),
        # A single time is a one-hour slot, cut at closing time.
        ("今天晚上8点半", AFTERNOON, at(22, 20, 30), at(22, 21)),
        # No day: today if the window is still ahead, else tomorrow.
        ("下午4点到5点", AFTERNOON, at(22, 16), at(22, 17)),
        ("上午10点", AFTERNOON, at(23, 10), at(23, 11)),
        # A period alone is a window.
        ("后天上午", AFTERNOON, at(24, 9), at(24, 12)),
        ("下周一上午十点", AFTERNOON, at(24, 10), at(24, 11)),
        # Today is Saturday and its morning is over: "周六上午" is next Saturday's.
        ("周六上午10点", AFTERNOON, at(29, 10), at(29, 11)),
        ("25号下午3点", AFTERNOON, at(25, 15), at(25, 16)),
    ],
)
def test_slot(text: str, now: datetime, start: datetime, end: datetime) -> None:
    assert parse_slot(text, now) == Slot(start=start, end=end)


def test_inside_the_window_the_slot_starts_now() -> None:
    slot = parse_slot("今天下午2点到3点", at(22, 14, 20))
    assert slot == Slot(start=at(22, 14, 20), end=at(22, 15))


@pytest.mark.parametrize(
    ("text", "now", "problem"),
    [
        ("晚上9点", AFTERNOON, SlotProblem.OUTSIDE_HOURS),
        ("明天早上8点", AFTERNOON, SlotProblem.OUTSIDE_HOURS),
        ("明天晚上10点到11点", AFTERNOON, SlotProblem.OUTSIDE_HOURS),
        ("今天上午10点", AFTERNOON, SlotProblem.PAST),
        ("今天下午3点到4点", LATE_NIGHT, SlotProblem.PAST),
        ("下下下周三", AFTERNOON, SlotProblem.TOO_FAR),
        ("你好", AFTERNOON, SlotProblem.NOT_FOUND),
        ("13800138000", AFTERNOON, SlotProblem.NOT_FOUND),
    ],
)
def test_slot_problems(text: str, now: datetime, problem: SlotProblem) -> None:
    assert parse_slot(text, now) is problem


def test_a_day_alone_means_the_callback_hours_of_that_day() -> None:
    assert parse_slot("明天", AFTERNOON) == Slot(start=at(23, 9), end=at(23, 21))


def test_service_clock_comes_from_metadata_with_its_offset() -> None:
    now = service_now("2025-11-22T23:10:00+08:00")
    assert now == LATE_NIGHT and now.utcoffset() == timedelta(hours=8)
    assert service_now("2025-11-22T15:10:00Z") == LATE_NIGHT


def test_service_clock_falls_back_to_local_time() -> None:
    fallback = service_now(None)
    assert fallback.tzinfo is not None
    assert abs((datetime.now().astimezone() - fallback).total_seconds()) < 5
    assert service_now("not a date").tzinfo is not None
