"""Chinese phone numbers and callback time slots, parsed from free customer text.

Pure functions of (text, service clock): no I/O, so the form validation stays testable and the
service clock (the gateway's ``metadata["now"]``) is the only notion of "now".
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from enum import Enum

# Callbacks are made by people on shift: the slot must lie inside these hours (service clock).
CALLBACK_OPEN = time(9, 0)
CALLBACK_CLOSE = time(21, 0)
# Further ahead than this is almost always a misreading (a phone digit taken for a date...).
MAX_DAYS_AHEAD = 14
# Before this hour, "明早/明天" said at night means the coming morning, not the day after it.
WEE_HOURS_END = 5

_CN_DIGITS = {
    "零": 0,
    "〇": 0,
    "洞": 0,
    "一": 1,
    "幺": 1,
    "壹": 1,
    "二": 2,
    "两": 2,
    "兩": 2,
    "贰": 2,
    "三": 3,
    "叁": 3,
    "四": 4,
    "肆": 4,
    "五": 5,
    "伍": 5,
    "六": 6,
    "陆": 6,
    "七": 7,
    "柒": 7,
    "八": 8,
    "捌": 8,
    "九": 9,
    "玖": 9,
}
_CN_NUM_CHARS = "".join(_CN_DIGITS) + "十拾"

# A run of Chinese digits long enough to be a spoken phone number (一三八零零一三八零零零).
_CN_PHONE_RUN = re.compile(rf"[{''.join(_CN_DIGITS)}]{{7,}}")
_MOBILE = re.compile(r"(?<!\d)(?:\+?86[\s-]?)?(1[3-9]\d(?:[\s-]?\d){8})(?!\d)")
_LANDLINE = re.compile(r"(?<!\d)(0\d{2,3})[\s-]?(\d{7,8})(?!\d)")
# Something that looks like an attempt at a number but is not a valid one (too short, too long).
_DIGIT_RUN = re.compile(r"(?<!\d)\d(?:[\s-]?\d){5,}(?!\d)")

_WEEKDAYS = {"一": 0, "二": 1, "三": 2, "四": 3, "五": 4, "六": 5, "日": 6, "天": 6, "末": 5}


class SlotProblem(str, Enum):  # noqa: UP042 -- StrEnum is 3.11+, the action server runs 3.10
    """Why a time could not be accepted: the form re-asks with the matching reason."""

    NOT_FOUND = "slot_not_found"
    OUTSIDE_HOURS = "slot_outside_hours"
    PAST = "slot_past"
    TOO_FAR = "slot_too_far"


@dataclass(frozen=True)
class Slot:
    start: datetime
    end: datetime


@dataclass(frozen=True)
class _Point:
    hour: int
    minute: int
    period: str | None


def normalise(text: str) -> str:
    """Full-width digits and punctuation to ASCII, so one set of patterns covers every keyboard."""
    return unicodedata.normalize("NFKC", text or "")


def _cn_to_int(word: str) -> int | None:
    """十 → 10, 十一 → 11, 二十 → 20, 二十一 → 21, 九 → 9, 两 → 2; None when not a small numeral."""
    word = word.replace("拾", "十")
    if not word or any(c not in _CN_DIGITS and c != "十" for c in word):
        return None
    if "十" not in word:
        return int("".join(str(_CN_DIGITS[c]) for c in word)) if len(word) <= 2 else None
    tens_part, _, ones_part = word.partition("十")
    if len(tens_part) > 1 or len(ones_part) > 1 or "十" in ones_part:
        return None
    tens = _CN_DIGITS[tens_part] if tens_part else 1
    ones = _CN_DIGITS[ones_part] if ones_part else 0
    return tens * 10 + ones


def _spoken_phone_to_digits(text: str) -> str:
    return _CN_PHONE_RUN.sub(lambda m: "".join(str(_CN_DIGITS[c]) for c in m.group(0)), text)


def parse_phone(text: str) -> str | None:
    """A mainland mobile (11 digits) or landline (area code + number) found in the text."""
    text = _spoken_phone_to_digits(normalise(text))
    mobile = _MOBILE.search(text)
    if mobile:
        return re.sub(r"[\s-]", "", mobile.group(1))
    landline = _LANDLINE.search(text)
    if landline:
        return f"{landline.group(1)}-{landline.group(2)}"
    return None


def looks_like_bad_phone(text: str) -> bool:
    """Digits that were probably meant as a phone number but are not a valid one."""
    text = _spoken_phone_to_digits(normalise(text))
    return parse_phone(text) is None and bool(_DIGIT_RUN.search(text))


def _strip_numbers(text: str) -> str:
    """Remove phone numbers and long digit runs so their digits are never read as hours."""
    text = _MOBILE.sub(" ", text)
    text = _LANDLINE.sub(" ", text)
    return _DIGIT_RUN.sub(" ", text)


_QUARTERS = {"一": 1, "1": 1, "二": 2, "2": 2, "三": 3, "3": 3}
_QUARTER = re.compile(r"([一二三1-3])刻")
_CN_NUMBER_IN_TIME = re.compile(
    # Not after 早/晚/快/差...: "晚一点打" is "a bit later", not one o'clock.
    rf"(?<![早晚快慢差好有])([{_CN_NUM_CHARS}]{{1,3}})(?=\s*(?:点|點|时|時|:|到|至|~|-|—|号|號|日|分|钟|鐘))"
)
_CN_NUMBER_AFTER_HOUR = re.compile(rf"(?<=[点點时時])([{_CN_NUM_CHARS}]{{1,3}})(?=分?)")


def _arabic_time_numbers(text: str) -> str:
    """三点半 → 3点半, 十点到十一点 → 10点到11点, 九点一刻 → 9点15分."""
    text = _QUARTER.sub(lambda m: f"{15 * _QUARTERS[m.group(1)]}分", text)

    def repl(match: re.Match[str]) -> str:
        value = _cn_to_int(match.group(1))
        return str(value) if value is not None else match.group(1)

    text = _CN_NUMBER_IN_TIME.sub(repl, text)
    return _CN_NUMBER_AFTER_HOUR.sub(repl, text)


_PERIODS = {
    "凌晨": "dawn",
    "早上": "am",
    "早晨": "am",
    "一早": "am",
    "上午": "am",
    "早": "am",
    "中午": "noon",
    "午间": "noon",
    "下午": "pm",
    "午后": "pm",
    "傍晚": "evening",
    "晚上": "evening",
    "夜里": "evening",
    "晚": "evening",
}
_PERIOD_RE = "|".join(sorted(_PERIODS, key=len, reverse=True))
# A period alone ("明天上午") means a window, clipped to the callback hours later.
_PERIOD_WINDOWS = {
    "dawn": (time(5, 0), time(9, 0)),
    "am": (time(9, 0), time(12, 0)),
    "noon": (time(12, 0), time(14, 0)),
    "pm": (time(14, 0), time(18, 0)),
    "evening": (time(18, 0), time(21, 0)),
}
_MINUTE = r"(?:\s*(?:[:：.]\s*(?P<{m}>\d{{2}})|[点點时時]\s*(?:(?P<{h}>半)|(?P<{n}>\d{{1,2}})\s*分?)?))"
_CONNECTOR = r"\s*(?:到|至|~|-|—|－|或者|或)\s*"


def _point_pattern(tag: str, *, marker_required: bool) -> str:
    minute = _MINUTE.format(m=f"m{tag}", h=f"half{tag}", n=f"min{tag}")
    return rf"(?:(?P<p{tag}>{_PERIOD_RE})\s*)?(?P<h{tag}>\d{{1,2}})(?!\d)" + (
        minute if marker_required else f"{minute}?"
    )


_RANGE = re.compile(_point_pattern("1", marker_required=False) + _CONNECTOR + _point_pattern("2", marker_required=True))
_SINGLE = re.compile(_point_pattern("1", marker_required=True))
_PERIOD_ONLY = re.compile(rf"({_PERIOD_RE})")


def _point(match: re.Match[str], tag: str) -> _Point:
    minute = 0
    if match.group(f"m{tag}"):
        minute = int(match.group(f"m{tag}"))
    elif match.group(f"half{tag}"):
        minute = 30
    elif match.group(f"min{tag}"):
        minute = int(match.group(f"min{tag}"))
    period = match.group(f"p{tag}")
    return _Point(hour=int(match.group(f"h{tag}")), minute=minute, period=_PERIODS[period] if period else None)


def _to_24h(hour: int, period: str | None) -> int:
    if period in ("pm", "evening") and hour < 12:
        return hour + 12
    if period == "noon" and hour < 6:
        return hour + 12
    if period is None and 1 <= hour <= 8:
        # Nobody books a call for 3 a.m.: a bare "3点" inside 9:00–21:00 can only mean 15:00.
        return hour + 12
    return hour


def _day(text: str, now: datetime) -> tuple[date | None, str | None, bool]:
    """(date, period implied by the day word, whether a past window is an error).

    A weekday or day of the month whose window is over rolls on to the next one; 今天 cannot.
    """
    today = now.date()
    wee = now.hour < WEE_HOURS_END
    if "大后天" in text or "大後天" in text:
        return today + timedelta(days=3), None, True
    if "后天" in text or "後天" in text:
        return today + timedelta(days=2), None, True
    for word, period in (("明早", "am"), ("明晚", "evening"), ("明天", None), ("明日", None), ("明儿", None)):
        if word in text:
            return today + timedelta(days=0 if wee else 1), period, True
    for word, period in (("今早", "am"), ("今晚", "evening"), ("今天", None), ("今日", None), ("今儿", None)):
        if word in text:
            return today, period, True
    week = re.search(r"(下+)?(?:周|週|星期|礼拜|禮拜)([一二三四五六日天末])", text)
    if week:
        target = _WEEKDAYS[week.group(2)]
        ahead = (target - today.weekday()) % 7
        if week.group(1):
            ahead = (7 - today.weekday()) + target + 7 * (len(week.group(1)) - 1)
            return today + timedelta(days=ahead), None, True
        return today + timedelta(days=ahead), None, ahead != 0
    day_of_month = re.search(r"(?<!\d)(\d{1,2})\s*[号號日]", text)
    if day_of_month:
        wanted = int(day_of_month.group(1))
        candidate = _safe_date(today.year, today.month, wanted)
        if candidate is None or candidate < today:
            year, month = (today.year + 1, 1) if today.month == 12 else (today.year, today.month + 1)
            candidate = _safe_date(year, month, wanted)
        if candidate is not None:
            return candidate, None, True
    return None, None, False


def _safe_date(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None


def _times(text: str, day_period: str | None) -> tuple[time, time] | None:
    found = _RANGE.search(text)
    if found:
        first, second = _point(found, "1"), _point(found, "2")
        period1 = first.period or second.period or day_period
        period2 = second.period or period1
        start_hour = _to_24h(first.hour, period1)
        end_hour = _to_24h(second.hour, period2)
        if end_hour * 60 + second.minute <= start_hour * 60 + first.minute and end_hour < 12:
            end_hour += 12
        if not (0 <= start_hour < 24 and 0 <= end_hour <= 24 and first.minute < 60 and second.minute < 60):
            return None
        start = time(start_hour, first.minute)
        end = time(23, 59) if end_hour == 24 else time(end_hour, second.minute)
        return (start, end) if end > start else None
    found = _SINGLE.search(text)
    if found:
        point = _point(found, "1")
        hour = _to_24h(point.hour, point.period or day_period)
        if not (0 <= hour < 24 and point.minute < 60):
            return None
        start = time(hour, point.minute)
        # A single time means a one-hour slot starting then, cut at closing time ("晚上8点半").
        end_dt = datetime.combine(date.min, start) + timedelta(hours=1)
        end = end_dt.time() if end_dt.date() == date.min else time(23, 59)
        if CALLBACK_OPEN <= start < CALLBACK_CLOSE < end:
            end = CALLBACK_CLOSE
        return start, end
    period_word = _PERIOD_ONLY.search(text)
    period = _PERIODS[period_word.group(1)] if period_word else day_period
    if period:
        return _PERIOD_WINDOWS[period]
    return None


def parse_slot(text: str, now: datetime) -> Slot | SlotProblem:
    """The callback window the customer asked for, or why it cannot be used.

    ``now`` carries the service time zone; returned datetimes are in it.
    """
    cleaned = _arabic_time_numbers(_strip_numbers(_spoken_phone_to_digits(normalise(text))))
    day, day_period, fixed_day = _day(cleaned, now)
    times = _times(cleaned, day_period)
    if times is None:
        if day is not None:
            # "明天" alone: any time that day within the callback hours.
            times = (CALLBACK_OPEN, CALLBACK_CLOSE)
        else:
            return SlotProblem.NOT_FOUND
    start_t, end_t = times
    if start_t < CALLBACK_OPEN or end_t > CALLBACK_CLOSE:
        return SlotProblem.OUTSIDE_HOURS
    tz = now.tzinfo
    base = day if day is not None else now.date()
    start = datetime.combine(base, start_t, tzinfo=tz)
    end = datetime.combine(base, end_t, tzinfo=tz)
    if end <= now:
        if fixed_day:
            return SlotProblem.PAST
        # Today's window is over: a bare time means tomorrow, a bare weekday means next week.
        roll = timedelta(days=1 if day is None else 7)
        start, end = start + roll, end + roll
    if start < now:
        # Already inside the window: the call can still come before it closes.
        start = now.replace(second=0, microsecond=0)
    if (start.date() - now.date()).days > MAX_DAYS_AHEAD:
        return SlotProblem.TOO_FAR
    return Slot(start=start, end=end)


def service_now(raw: object, fallback: datetime | None = None) -> datetime:
    """The service clock from the gateway's metadata, else the action server's local time."""
    if isinstance(raw, str) and raw:
        try:
            parsed = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
        except ValueError:
            parsed = None
        if parsed is not None:
            return parsed if parsed.tzinfo else parsed.astimezone()
    return fallback or datetime.now().astimezone()
