"""Server-side SVG geometry for the pages' charts: no JavaScript, readable without colour
(every chart also has its figures in text), and exact inputs (Decimal) scaled to a viewBox."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from tally.domain.api_usage import Bucket

WIDE, NARROW, HEIGHT = Decimal(1000), Decimal(420), Decimal(240)
PAD_LEFT, PAD_BOTTOM, PAD_TOP = Decimal(56), Decimal(28), Decimal(12)
TENTH = Decimal("0.1")


def _at(value: Decimal) -> str:
    return str(value.quantize(TENTH))


def ring_dash(percent: Decimal | None) -> str:
    """``stroke-dasharray`` of a ring whose circumference is 100 (r = 15.9155): the filled
    part is the percentage, capped at a full ring."""
    filled = min(max(percent or Decimal(0), Decimal(0)), Decimal(100))
    return f"{_at(filled)} {_at(Decimal(100) - filled)}"


@dataclass(frozen=True)
class Tick:
    y: str
    label: Decimal


@dataclass(frozen=True)
class Column:
    x: str
    y: str
    width: str
    height: str
    label: str
    value: Decimal


@dataclass(frozen=True)
class Trend:
    """A month's cumulative usage, its projection to the month's end and the allocation."""

    used_path: str  # polyline points of the cumulative usage, day by day
    projection: str  # from the last day read to the month's end
    allocation_y: str | None
    amber_y: str | None  # 80 % of the allocation
    ticks: list[Tick]
    days: list[tuple[str, int]]  # x and day number of the labelled days
    left: str
    right: str
    bottom: str
    width: str
    height: str


def _scale(top: Decimal) -> Decimal:
    """A round axis maximum above ``top``: 1, 2 or 5 times a power of ten."""
    if top <= 0:
        return Decimal(1)
    magnitude = Decimal(10) ** (top.adjusted())
    for step in (1, 2, 5, 10):
        if top <= step * magnitude:
            return step * magnitude
    return 10 * magnitude


def trend(
    daily: Sequence[Decimal], month_days: int, allocation: Decimal, projected: Decimal
) -> Trend:
    """``daily`` holds the usage of each day read so far (day 1 first); drawn wide."""
    top = _scale(max([allocation, projected, sum(daily, Decimal(0))]) * Decimal("1.05"))
    plot_w = WIDE - PAD_LEFT - 8
    plot_h = HEIGHT - PAD_TOP - PAD_BOTTOM

    def x(day: Decimal) -> Decimal:
        return PAD_LEFT + plot_w * day / month_days

    def y(value: Decimal) -> Decimal:
        return HEIGHT - PAD_BOTTOM - plot_h * value / top

    total, points = Decimal(0), [f"{_at(x(Decimal(0)))},{_at(y(Decimal(0)))}"]
    for day, quantity in enumerate(daily, start=1):
        total += quantity
        points.append(f"{_at(x(Decimal(day)))},{_at(y(total))}")
    last = Decimal(len(daily))
    projection = (
        f"{_at(x(last))},{_at(y(total))} {_at(x(Decimal(month_days)))},{_at(y(projected))}"
        if len(daily) < month_days
        else ""
    )
    return Trend(
        used_path=" ".join(points),
        projection=projection,
        allocation_y=_at(y(allocation)) if allocation else None,
        amber_y=_at(y(allocation * Decimal("0.8"))) if allocation else None,
        ticks=[Tick(_at(y(top * share / 4)), top * share / 4) for share in range(5)],
        days=[(_at(x(Decimal(d))), d) for d in (1, 8, 15, 22, 29) if d <= month_days],
        left=_at(PAD_LEFT),
        right=_at(WIDE - 8),
        bottom=_at(HEIGHT - PAD_BOTTOM),
        width=_at(WIDE),
        height=_at(HEIGHT),
    )


def columns(values: Sequence[tuple[str, Decimal]]) -> tuple[list[Column], list[Tick]]:
    """Vertical bars for labelled values (the weeks of a month), with their axis ticks; drawn
    narrow (a card's width)."""
    top = _scale(max([v for _, v in values], default=Decimal(0)) * Decimal("1.05"))
    plot_w = NARROW - PAD_LEFT - 8
    plot_h = HEIGHT - PAD_TOP - PAD_BOTTOM
    slot = plot_w / max(len(values), 1)
    bars = []
    for index, (label, value) in enumerate(values):
        height = plot_h * value / top
        bars.append(
            Column(
                x=_at(PAD_LEFT + slot * index + slot / 6),
                y=_at(HEIGHT - PAD_BOTTOM - height),
                width=_at(slot * 2 / 3),
                height=_at(height),
                label=label,
                value=value,
            )
        )
    ticks = [
        Tick(_at(HEIGHT - PAD_BOTTOM - plot_h * share / 4), top * share / 4) for share in range(5)
    ]
    return bars, ticks


@dataclass(frozen=True)
class Segment:
    """One status bucket's part of a day's column."""

    bucket: str
    y: str
    height: str
    requests: int


@dataclass(frozen=True)
class Day:
    day: date
    x: str
    width: str
    total: int
    segments: list[Segment]


@dataclass(frozen=True)
class Stacked:
    """Requests per UTC day, each day a column stacked by status bucket; about eight days
    labelled (the first too), ticks on the left; drawn wide."""

    days: list[Day]
    ticks: list[Tick]
    labels: list[tuple[str, date]]  # x and day of the labelled days
    left: str
    right: str
    bottom: str
    width: str
    height: str


def daily_statuses(
    days: Sequence[tuple[date, Mapping[Bucket, int]]], buckets: Sequence[Bucket]
) -> Stacked:
    """``days``: each UTC day with its requests per bucket; stacked in ``buckets`` order
    from the axis up."""
    top = _scale(
        Decimal(max((sum(counts.values()) for _, counts in days), default=0)) * Decimal("1.05")
    )
    plot_w = WIDE - PAD_LEFT - 8
    plot_h = HEIGHT - PAD_TOP - PAD_BOTTOM
    slot = plot_w / max(len(days), 1)
    step = max(1, -(-len(days) // 8))  # about eight labelled days, whatever the range
    columns = []
    for index, (day, counts) in enumerate(days):
        base, segments = HEIGHT - PAD_BOTTOM, []
        for name in buckets:
            if counts.get(name):
                height = plot_h * counts[name] / top
                base -= height
                segments.append(Segment(name, _at(base), _at(height), counts[name]))
        columns.append(
            Day(day, _at(PAD_LEFT + slot * index + slot / 8), _at(slot * 3 / 4),
                sum(counts.values()), segments)
        )  # fmt: skip
    return Stacked(
        days=columns,
        ticks=[
            Tick(_at(HEIGHT - PAD_BOTTOM - plot_h * share / 4), top * share / 4)
            for share in range(5)
        ],
        labels=[
            (_at(PAD_LEFT + slot * (i + Decimal("0.5"))), day)
            for i, (day, _) in enumerate(days)
            if i % step == 0
        ],
        left=_at(PAD_LEFT),
        right=_at(WIDE - 8),
        bottom=_at(HEIGHT - PAD_BOTTOM),
        width=_at(WIDE),
        height=_at(HEIGHT),
    )
