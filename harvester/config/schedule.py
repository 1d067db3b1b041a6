"""Schedules: 5-field cron strings or intervals, their APScheduler triggers, and missed runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from pydantic import AfterValidator

from harvester.config.types import Kind, check_positive, parse_duration, problem, show

_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def _weekday(text: str) -> int:
    if text.isdigit() and int(text) <= 7:
        return int(text)
    if text.lower() in _WEEKDAYS:
        return _WEEKDAYS.index(text.lower())
    raise ValueError(f"bad day of week {text!r}")


def _cron_weekdays(field: str) -> str:
    """A crontab day-of-week field as APScheduler 3 weekday names.

    Crontab counts Sunday as 0 (and 7); APScheduler 3 counts Monday as 0, also in its
    `from_crontab`. Spelling the days out keeps the crontab meaning users expect.
    """
    if field == "*":
        return field
    days: set[int] = set()
    for item in field.split(","):
        spec, slash, step_text = item.partition("/")
        step = int(step_text) if step_text.isdigit() and int(step_text) > 0 else 0
        if slash and not step:
            raise ValueError(f"bad step in day of week {item!r}")
        if spec == "*":
            low, high = 0, 6
        elif "-" in spec:
            first, last = spec.split("-", 1)
            low, high = _weekday(first), _weekday(last)
        else:
            low = _weekday(spec)
            high = 6 if slash else low
        if high < low:
            raise ValueError(f"bad range in day of week {item!r}")
        days.update(day % 7 for day in range(low, high + 1, step or 1))
    return ",".join(_WEEKDAYS[day] for day in sorted(days))


def _cron_trigger(expr: str, timezone: str, jitter: float | None) -> CronTrigger:
    fields = expr.split()
    if len(fields) != 5:
        raise ValueError(f"{len(fields)} fields instead of 5")
    minute, hour, day, month, day_of_week = fields
    return CronTrigger(
        minute=minute,
        hour=hour,
        day=day,
        month=month,
        day_of_week=_cron_weekdays(day_of_week),
        timezone=timezone,
        jitter=jitter,
    )


def _interval(schedule: str) -> timedelta | None:
    """The interval when `schedule` is a duration; None when it is a cron string."""
    return parse_duration(schedule) if " " not in schedule.strip() else None


def _check_schedule(value: str) -> str:
    interval = _interval(value)
    if interval is not None:
        check_positive(interval)
        return value
    try:
        _cron_trigger(value, "UTC", None)
    except ValueError as exc:
        raise problem(
            f"{show(value)} is neither a cron string nor an interval ({exc})",
            'a 5-field cron string like "*/15 * * * *" or an interval like "15m"',
        ) from None
    return value


Schedule = Annotated[str, AfterValidator(_check_schedule), Kind("cron string or duration")]


def make_trigger(schedule: str, *, timezone: str, jitter: timedelta) -> BaseTrigger:
    """The APScheduler trigger of a valid `schedule` in `timezone`, with `jitter`."""
    jitter_seconds = jitter.total_seconds() or None
    interval = _interval(schedule)
    if interval is not None:
        return IntervalTrigger(
            seconds=interval.total_seconds(), timezone=timezone, jitter=jitter_seconds
        )
    return _cron_trigger(schedule, timezone, jitter_seconds)


def missed_run(trigger: BaseTrigger, last_started: datetime | None, now: datetime) -> bool:
    """True when the schedule had a run due between the target's last run and now."""
    if last_started is None:
        return False
    if last_started.tzinfo is None:
        last_started = last_started.replace(tzinfo=UTC)
    if isinstance(trigger, IntervalTrigger):
        return bool(last_started + trigger.interval <= now)
    due = trigger.get_next_fire_time(None, last_started + timedelta(microseconds=1))
    return due is not None and due <= now
