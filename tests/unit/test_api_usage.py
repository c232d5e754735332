"""The API usage report's rules: buckets, rankings, shares, cross-filter, and
date presets that never include the current UTC day."""

from __future__ import annotations

from collections import Counter
from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tally.domain.api_usage import (
    BUCKETS,
    SUCCESSFUL,
    TOP_URLS_PER_CLIENT,
    DayRange,
    Preset,
    Requests,
    Tiling,
    bucket,
    day_range,
    report,
    spans_of,
    tiling,
)


@pytest.mark.parametrize(
    ("status", "expected"),
    [(101, "200"), (200, "200"), (204, "200"), (301, "300"), (400, "400"), (401, "400"),
     (404, "400"), (429, "429"), (499, "400"), (500, "500"), (503, "500")],
)  # fmt: skip
def test_status_codes_fall_in_the_dashboards_five_buckets(status: int, expected: str) -> None:
    assert bucket(status) == expected


TODAY = date(2026, 11, 30)


@pytest.mark.parametrize(
    ("preset", "first", "last"),
    [
        (Preset.previous_7_days, date(2026, 11, 23), date(2026, 11, 29)),
        (Preset.previous_30_days, date(2026, 10, 31), date(2026, 11, 29)),
        (Preset.this_month, date(2026, 11, 1), date(2026, 11, 29)),
        (Preset.last_month, date(2026, 10, 1), date(2026, 10, 31)),
        (Preset.previous_3_months, date(2026, 8, 1), date(2026, 10, 31)),
    ],
)
def test_presets_cover_whole_days_before_today(preset: Preset, first: date, last: date) -> None:
    assert day_range(preset, TODAY) == DayRange(first, last)


def test_this_month_on_its_first_day_is_empty_and_january_looks_back_a_year() -> None:
    assert day_range(Preset.this_month, date(2027, 1, 1)).empty
    assert day_range(Preset.last_month, date(2027, 1, 1)) == DayRange(
        date(2026, 12, 1), date(2026, 12, 31)
    )
    assert day_range(Preset.previous_3_months, date(2027, 2, 15)).first == date(2026, 11, 1)


@given(today=st.dates(date(2001, 1, 1), date(2099, 12, 31)), preset=st.sampled_from(Preset))
def test_no_preset_ever_includes_today(today: date, preset: Preset) -> None:
    chosen = day_range(preset, today, today - timedelta(days=40), today + timedelta(days=3))
    assert chosen.last < today


def test_a_custom_range_stops_at_yesterday_and_refuses_a_backward_one() -> None:
    assert day_range(Preset.custom, TODAY, date(2026, 11, 1), date(2026, 12, 31)).last == date(
        2026, 11, 29
    )
    with pytest.raises(ValueError, match="ends"):
        day_range(Preset.custom, TODAY, date(2026, 11, 5), date(2026, 11, 1))


def req(client: str, url: str, status: int, count: int) -> Requests:
    method, uri = url.split(" ", 1)
    return Requests(client, method, uri, status, count)


ROWS = [
    req("crm", "GET /api/v2/users", 200, 60),
    req("crm", "GET /api/v2/users", 429, 10),
    req("crm", "POST /api/v2/conversations", 500, 5),
    req("wfm", "GET /api/v2/users", 200, 20),
    req("wfm", "GET /api/v2/analytics", 400, 5),
]


def test_sections_rank_clients_and_urls_with_outcomes_and_shares() -> None:
    got = report(ROWS)
    assert (got.total.requests, got.total.successful, got.total.failed) == (100, 80, 20)
    assert got.total.by_bucket == {"200": 80, "300": 0, "400": 5, "429": 10, "500": 5}
    assert [
        (r.name, r.requests, r.successful, r.failed, str(r.share)) for r in got.top_clients
    ] == [
        ("crm", 75, 60, 15, "75.00"),
        ("wfm", 25, 20, 5, "25.00"),
    ]
    assert [(r.name, r.requests) for r in got.top_urls] == [
        ("GET /api/v2/users", 90),
        ("GET /api/v2/analytics", 5),  # ties rank by name
        ("POST /api/v2/conversations", 5),
    ]
    assert [(p.client, p.url, p.requests) for p in got.client_urls] == [
        ("crm", "GET /api/v2/users", 70),
        ("crm", "POST /api/v2/conversations", 5),
        ("wfm", "GET /api/v2/users", 20),
        ("wfm", "GET /api/v2/analytics", 5),
    ]
    assert all(row.filtered_share is None for row in got.urls + got.clients)


def test_cross_filter_shows_the_filtered_share_beside_the_overall_one() -> None:
    by_client = report(ROWS, client="wfm")
    assert {r.name: (str(r.share), str(r.filtered_share)) for r in by_client.urls} == {
        "GET /api/v2/users": ("90.00", "80.00"),
        "GET /api/v2/analytics": ("5.00", "20.00"),
        "POST /api/v2/conversations": ("5.00", "0.00"),
    }
    by_url = report(ROWS, url="GET /api/v2/users")
    assert {r.name: str(r.filtered_share) for r in by_url.clients} == {
        "crm": "77.78",
        "wfm": "22.22",
    }
    with pytest.raises(ValueError, match="one OAuth client or one URL"):
        report(ROWS, client="crm", url="GET /api/v2/users")


rows = st.lists(
    st.builds(
        Requests,
        client=st.sampled_from(["a", "b", "c", "d", "e", "f", "g"]),
        method=st.sampled_from(["GET", "POST", "DELETE"]),
        template_uri=st.sampled_from(["/x", "/y/{id}", "/z"]),
        status=st.integers(100, 599),
        count=st.integers(1, 1000),
    ),
    max_size=40,
)


@given(rows=rows)
def test_every_section_adds_up_to_the_requests_given(rows: list[Requests]) -> None:
    got = report(rows)
    expected = Counter[str]()
    for row in rows:
        expected[row.client] += row.count
    assert {r.name: r.requests for r in got.clients} == dict(expected)
    assert sum(r.requests for r in got.urls) == got.total.requests == sum(expected.values())
    assert sum(p.requests for p in got.client_urls) == got.total.requests
    for section in (got.clients, got.urls):
        assert all(r.successful + r.failed == r.requests for r in section)
        counts = [r.requests for r in section]
        assert counts == sorted(counts, reverse=True)
    assert len(got.top_clients) == min(5, len(expected))


def test_the_page_shows_each_clients_most_requested_urls_and_how_many_it_calls() -> None:
    rows = [Requests("crm", "GET", f"/api/v2/r{n}", 200, 100 - n) for n in range(25)]
    rows += [Requests("wfm", "GET", "/api/v2/users", 200, 7)]
    got = report(rows)
    shown = [(pair.client, pair.url, calls) for pair, calls in got.top_client_urls]
    assert shown == [("crm", f"GET /api/v2/r{n}", 25) for n in range(TOP_URLS_PER_CLIENT)] + [
        ("wfm", "GET /api/v2/users", 1)
    ]
    assert len(got.client_urls) == 26  # the CSV and the API keep every pair


@given(
    first=st.dates(date(2000, 1, 1), date(2099, 12, 31)),
    length=st.integers(min_value=0, max_value=800),
)
def test_a_tiling_adds_up_to_every_day_of_its_range_once_in_few_pieces(
    first: date, length: int
) -> None:
    days = DayRange(first, first + timedelta(days=length - 1))
    cut = tiling(days)
    net = Counter(cut.days)
    for span in cut.spans:
        assert span in spans_of(span.first)  # a month-week or a month, whole
        net.update(span.first + timedelta(days=n) for n in range(span.days))
    net.subtract(cut.minus)
    assert not set(cut.minus) & set(cut.days)
    assert +net == Counter(days.first + timedelta(days=n) for n in range(days.days))
    assert -net == Counter()  # nothing taken away twice
    assert len(cut.spans) + len(cut.days) + len(cut.minus) <= 20 + days.days // 28


@given(day=st.dates(date(2000, 1, 1), date(2099, 12, 31)))
def test_a_day_lies_in_its_month_week_and_its_month(day: date) -> None:
    week, month = spans_of(day)
    assert week.first <= day <= week.last and month.first <= day <= month.last
    assert month.first.day == 1 and (month.last + timedelta(days=1)).day == 1
    assert week.first.day in (1, 8, 15, 22, 29) and month.first <= week.first
    assert week.last <= month.last and (week.days == 7 or week.last == month.last)


def test_the_presets_read_few_pieces() -> None:
    nov = [DayRange(date(2026, 11, d), date(2026, 11, d + 6)) for d in (1, 8, 15, 22)]
    assert tiling(DayRange(date(2026, 11, 23), date(2026, 11, 29))) == Tiling(
        [nov[3]], [date(2026, 11, 29)], [date(2026, 11, 22)]
    )  # previous 7 days: a week less a day, and a day
    assert tiling(DayRange(date(2026, 11, 1), date(2026, 11, 29))) == Tiling(
        [DayRange(date(2026, 11, 1), date(2026, 11, 30))], [], [date(2026, 11, 30)]
    )  # this month: the month less today
    assert tiling(DayRange(date(2026, 10, 31), date(2026, 11, 29))) == Tiling(
        [DayRange(date(2026, 11, 1), date(2026, 11, 30))],
        [date(2026, 10, 31)],
        [date(2026, 11, 30)],
    )
    months = tiling(DayRange(date(2026, 8, 1), date(2026, 10, 31)))
    assert [(s.first.month, s.days) for s in months.spans] == [(8, 31), (9, 30), (10, 31)]
    assert months.days == months.minus == []


def test_the_successful_buckets_come_first() -> None:
    """The report counts a pair's successful requests as its first buckets."""
    assert set(BUCKETS[: len(SUCCESSFUL)]) == SUCCESSFUL
