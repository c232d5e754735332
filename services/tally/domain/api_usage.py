"""The API usage report: which OAuth clients and URLs make the requests, which fail.

Computed from daily rollups (UTC days) of billable requests; pure. Rules:

- A status code falls in one bucket: ``200`` (1xx and 2xx: succeeded), ``300`` (3xx),
  ``400`` (4xx other than 429), ``429`` (rate limited), ``500`` (5xx). Successful
  requests are the 200 and 300 buckets; failed ones the rest.
- A URL is a method with a template URI (``GET /api/v2/users/{userId}``).
- Rankings are by requests, then by name, so equal counts always list in the same order.
- Date ranges are whole UTC days and never include the current one (the report lags a day).
- Cross-filter (the Analytics view): one client, or one URL, at a time; the other side then
  shows each row's share of the filtered requests beside its share of all requests.
"""

from __future__ import annotations

import csv
import heapq
import io
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from enum import StrEnum
from functools import cached_property
from operator import itemgetter
from typing import Literal, NamedTuple

from tally.domain.csv_cells import safe_row

Bucket = Literal["200", "300", "400", "429", "500"]
BUCKETS: tuple[Bucket, ...] = ("200", "300", "400", "429", "500")
SUCCESSFUL: frozenset[Bucket] = frozenset({"200", "300"})
_SUCCESSFUL_FIRST = len(SUCCESSFUL)  # BUCKETS lists the successful buckets first
TOP = 5
TOP_URLS_PER_CLIENT = 10  # the page's client/URL section; the CSV and API keep every pair


def bucket(status: int) -> Bucket:
    if status == 429:
        return "429"
    if status >= 500:
        return "500"
    if status >= 400:
        return "400"
    return "300" if status >= 300 else "200"


class Preset(StrEnum):
    previous_7_days = "previous-7-days"
    previous_30_days = "previous-30-days"
    this_month = "this-month"
    last_month = "last-month"
    previous_3_months = "previous-3-months"
    custom = "custom"


@dataclass(frozen=True)
class DayRange:
    """Whole UTC days, ``first`` to ``last`` inclusive; empty when ``last < first``."""

    first: date
    last: date

    @property
    def empty(self) -> bool:
        return self.last < self.first

    @property
    def days(self) -> int:
        return max((self.last - self.first).days + 1, 0)


def _month_start(day: date, months_back: int = 0) -> date:
    month = day.year * 12 + day.month - 1 - months_back
    return date(month // 12, month % 12 + 1, 1)


def _month_end(day: date) -> date:
    return _month_start(day, -1) - timedelta(days=1)


WEEK_STARTS = (1, 8, 15, 22, 29)  # a month's weeks: 1-7, 8-14, 15-21, 22-28, 29-end


def spans_of(day: date) -> tuple[DayRange, DayRange]:
    """The two spans ``day`` is summed into besides its own row: its month-week and its month
    (the SQL function ``usage_spans`` of migration 0014 says the same)."""
    week = min((day.day - 1) // 7, len(WEEK_STARTS) - 1)
    start = day.replace(day=WEEK_STARTS[week])
    end = _month_end(day) if week == len(WEEK_STARTS) - 1 else start + timedelta(days=6)
    return DayRange(start, end), DayRange(day.replace(day=1), _month_end(day))


@dataclass(frozen=True)
class Tiling:
    """A range as few rows read it: whole spans (months, month-weeks) and single days added,
    and single days outside the range taken away from a span that holds them."""

    spans: list[DayRange]
    days: list[date]
    minus: list[date]


def _days_of(span: DayRange) -> list[date]:
    return [span.first + timedelta(days=n) for n in range(span.days)]


def tiling(days: DayRange) -> Tiling:
    """Cut ``days`` into whole months, then whole month-weeks, then single days (each day
    in exactly one piece); then read a month-week, then a month, less its days outside the
    range wherever that makes fewer pieces than the pieces inside it (the previous 7 days:
    a week less one day, plus one; this month: the month less today). A span holds the sum
    of its days' rows, so the pieces always add up to the range's days, each once."""
    pieces: list[tuple[DayRange, int]] = []  # (piece, +1 added or -1 taken away)
    day = days.first
    while day <= days.last:
        week, month = spans_of(day)
        whole = [s for s in (month, week) if s.first == day and s.last <= days.last]
        pieces.append((whole[0] if whole else DayRange(day, day), 1))
        day = pieces[-1][0].last + timedelta(days=1)
    for grain in (0, 1):  # month-weeks, then months
        inside: dict[DayRange, list[tuple[DayRange, int]]] = defaultdict(list)
        for piece in pieces:
            span = spans_of(piece[0].first)[grain]
            inside[span if piece[0].last <= span.last else piece[0]].append(piece)
        for span, held in inside.items():
            outside = [d for d in _days_of(span) if not days.first <= d <= days.last]
            if len(held) > 1 + len(outside):
                pieces = [p for p in pieces if p not in held]
                pieces += [(span, 1)] + [(DayRange(d, d), -1) for d in outside]
    pieces.sort(key=lambda piece: piece[0].first)
    return Tiling(  # a one-day piece reads its daily rows (a one-day span holds the same)
        spans=[piece for piece, sign in pieces if sign > 0 and piece.days > 1],
        days=[piece.first for piece, sign in pieces if sign > 0 and piece.days == 1],
        minus=[piece.first for piece, sign in pieces if sign < 0],
    )


def day_range(
    preset: Preset, today: date, first: date | None = None, last: date | None = None
) -> DayRange:
    """The days a preset covers on ``today`` (UTC), never ``today`` itself.

    ``previous-3-months`` is the three whole calendar months before this one; ``custom``
    takes ``first`` and ``last`` and stops at yesterday.
    """
    yesterday = today - timedelta(days=1)
    if preset is Preset.previous_7_days:
        return DayRange(today - timedelta(days=7), yesterday)
    if preset is Preset.previous_30_days:
        return DayRange(today - timedelta(days=30), yesterday)
    if preset is Preset.this_month:
        return DayRange(_month_start(today), yesterday)
    if preset in (Preset.last_month, Preset.previous_3_months):
        back = 1 if preset is Preset.last_month else 3
        end = _month_start(today) - timedelta(days=1)
        return DayRange(_month_start(today, back), end)
    if first is None or last is None:
        raise ValueError("a custom range needs its first and last day")
    if last < first:
        raise ValueError(f"the range ends ({last}) before it starts ({first})")
    return DayRange(first, min(last, yesterday))


@dataclass(frozen=True)
class Requests:
    """One rollup row: requests of one client to one URL with one status, over some days."""

    client: str
    method: str
    template_uri: str
    status: int
    count: int

    @property
    def url(self) -> str:
        return f"{self.method} {self.template_uri}"


@dataclass
class Tally:
    """Requests counted by status bucket."""

    by_bucket: dict[Bucket, int] = field(default_factory=lambda: dict.fromkeys(BUCKETS, 0))

    @property
    def requests(self) -> int:
        return sum(self.by_bucket.values())

    @property
    def successful(self) -> int:
        return sum(n for b, n in self.by_bucket.items() if b in SUCCESSFUL)

    @property
    def failed(self) -> int:
        return self.requests - self.successful


@dataclass(frozen=True)
class Row:
    """One client or one URL in a section: its requests, outcomes and shares (percent)."""

    name: str
    requests: int
    successful: int
    failed: int
    by_bucket: dict[Bucket, int]
    share: Decimal  # of all requests in the range
    filtered_share: Decimal | None  # of the cross-filtered requests; None without a filter


class ClientUrl(NamedTuple):
    client: str
    url: str
    requests: int
    successful: int
    failed: int


@dataclass(frozen=True)
class Report:
    total: Tally
    clients: list[Row]  # every client, ranked
    urls: list[Row]  # every URL, ranked
    urls_of: dict[str, dict[str, list[int]]]  # client -> URL -> requests per bucket
    filter_client: str | None
    filter_url: str | None

    @property
    def top_clients(self) -> list[Row]:
        return self.clients[:TOP]

    @property
    def top_urls(self) -> list[Row]:
        return self.urls[:TOP]

    def _ranked_pairs(self, client: str, limit: int | None) -> list[ClientUrl]:
        """A client's URLs, most requested first (then by name): ``limit`` of them."""
        urls = self.urls_of[client].items()
        ranked = (
            sorted(urls, key=_rank_url)
            if limit is None
            else heapq.nsmallest(limit, urls, key=_rank_url)
        )
        return [_pair(client, url, counts) for url, counts in ranked]

    @cached_property
    def client_urls(self) -> list[ClientUrl]:
        """Requests of each client to each URL, clients in rank order, ranked per client (the
        CSV and the API: every pair)."""
        return [pair for row in self.clients for pair in self._ranked_pairs(row.name, None)]

    @property
    def top_client_urls(self) -> list[tuple[ClientUrl, int]]:
        """Each client's most requested URLs (its specification: "URLs that resulted in high API
        calls per client"), each with how many URLs that client calls in all: 40 clients
        calling 150 URLs make 6,000 pairs, too many rows to read (or to render fast)."""
        return [
            (pair, len(self.urls_of[row.name]))
            for row in self.clients
            for pair in self._ranked_pairs(row.name, TOP_URLS_PER_CLIENT)
        ]


def _pair(client: str, url: str, counts: list[int]) -> ClientUrl:
    requests = sum(counts)
    successful = sum(counts[:_SUCCESSFUL_FIRST])
    return ClientUrl(client, url, requests, successful, requests - successful)


def _rank_url(item: tuple[str, list[int]]) -> tuple[int, str]:
    url, counts = item
    return -sum(counts), url


def _percent(part: int, whole: int) -> Decimal:
    return Decimal(0) if whole == 0 else (Decimal(part) * 100 / whole).quantize(Decimal("0.01"))


def _column_sums(rows: list[list[int]]) -> list[int]:
    """Bucket counts added up (the loop runs in C, not in Python: 6,000 pairs)."""
    return [sum(column) for column in zip(*rows, strict=True)] if rows else [0] * len(BUCKETS)


def _tally(counts: list[int]) -> Tally:
    return Tally(dict(zip(BUCKETS, counts, strict=True)))


def _rank(tallies: dict[str, Tally]) -> list[tuple[str, Tally]]:
    return sorted(tallies.items(), key=lambda item: (-item[1].requests, item[0]))


# (client, URL) -> its requests per bucket, in BUCKETS order: what a report is made of
PairCounts = dict[tuple[str, str], list[int]]


def count_pairs(rows: Iterable[tuple[str, str, int, int]]) -> PairCounts:
    """Rows of (client, URL, exact status, requests) summed per client/URL pair and bucket
    (plain tuples: the adapter hands over its ~16,000 database rows as they come)."""
    slots: dict[int, int] = {}  # status -> its bucket's index
    pairs: PairCounts = {}
    for client, url, status, count in rows:
        if (slot := slots.get(status)) is None:
            slot = slots[status] = BUCKETS.index(bucket(status))
        if (counts := pairs.get((client, url))) is None:
            counts = pairs[(client, url)] = [0] * len(BUCKETS)
        counts[slot] += count
    return pairs


def report(rows: Iterable[Requests], client: str | None = None, url: str | None = None) -> Report:
    """The report's sections from rollup rows, cross-filtered by one client or one URL."""
    return pairs_report(
        count_pairs((r.client, r.url, r.status, r.count) for r in rows), client, url
    )


def pairs_report(pairs: PairCounts, client: str | None = None, url: str | None = None) -> Report:
    """The report's sections from its client/URL pairs (~6,000 where the rows per status
    are ~16,000): the clients, URLs and total are the pairs' column sums."""
    if client is not None and url is not None:
        raise ValueError("filter by one OAuth client or one URL at a time, not both")
    urls_of: dict[str, dict[str, list[int]]] = defaultdict(dict)
    of_url: dict[str, list[list[int]]] = defaultdict(list)
    for (c, u), counts in pairs.items():
        urls_of[c][u] = counts
        of_url[u].append(counts)
    clients = {name: _column_sums(list(of.values())) for name, of in urls_of.items()}
    urls = {name: _column_sums(rows) for name, rows in of_url.items()}
    total = _tally(_column_sums(list(clients.values())))
    # the other side's requests under the filter
    if client is not None:
        filtered = {u: sum(counts) for u, counts in urls_of.get(client, {}).items()}
    else:
        filtered = {c: sum(counts) for (c, u), counts in pairs.items() if u == url}
    filtered_total = sum(filtered.values())

    def section(side: dict[str, list[int]], filtered_side: bool) -> list[Row]:
        return [
            Row(
                name=name,
                requests=tally.requests,
                successful=tally.successful,
                failed=tally.failed,
                by_bucket=tally.by_bucket,
                share=_percent(tally.requests, total.requests),
                filtered_share=_percent(filtered.get(name, 0), filtered_total)
                if filtered_side
                else None,
            )
            for name, tally in _rank({name: _tally(counts) for name, counts in side.items()})
        ]

    return Report(
        total=total,
        clients=section(clients, filtered_side=url is not None),
        urls=section(urls, filtered_side=client is not None),
        urls_of=dict(urls_of),
        filter_client=client,
        filter_url=url,
    )


def selected(pairs: PairCounts, client: str | None, url: str | None) -> PairCounts:
    """The pairs of one client or of one URL."""
    return {
        (c, u): counts
        for (c, u), counts in pairs.items()
        if (client is None or c == client) and (url is None or u == url)
    }


def by_day(
    days: DayRange, counts: Iterable[tuple[date, int, int]]
) -> list[tuple[date, dict[Bucket, int]]]:
    """Every day of the range (none left out: a gap is a day without requests) with its
    requests per status bucket, from (day, status, requests) rows."""
    out = {day: dict.fromkeys(BUCKETS, 0) for day in _days_of(days)}
    for day, status, count in counts:
        out[day][bucket(status)] += count
    return list(out.items())


# The report's sections, as the CLI, CSV export and API name them (its specification's panels).
SECTIONS: tuple[str, ...] = (
    "top-clients",  # Most active: top 5 OAuth clients, successful and failed
    "statuses",  # Most active: requests per status bucket
    "top-urls",  # Most active: top 5 template URLs
    "clients",  # OAuth clients: requests per client (filtered share under a URL filter)
    "client-statuses",  # OAuth clients: status buckets per client
    "client-urls",  # OAuth clients: URL counts per client
    "urls",  # URL requests: every URL, outcomes and shares (filtered under a client filter)
    "totals",  # URL requests: total successful vs failed
)


def _ranked(rows: list[Row], name: str) -> list[dict[str, object]]:
    return [
        {
            "rank": rank,
            name: row.name,
            "requests": row.requests,
            "successful": row.successful,
            "failed": row.failed,
            **{f"status {b}": row.by_bucket[b] for b in BUCKETS},
            "share %": row.share,
            "filtered share %": row.filtered_share,
        }
        for rank, row in enumerate(rows, start=1)
    ]


def section_rows(result: Report, section: str) -> list[dict[str, object]]:
    """One section of the report as flat rows (the same columns on every row), for a table,
    JSON or CSV. Shares are percentages to two places; a filtered share is None without a
    cross-filter."""
    total = result.total
    if section in ("top-clients", "clients"):
        return _ranked(result.top_clients if section == "top-clients" else result.clients, "client")
    if section in ("top-urls", "urls"):
        return _ranked(result.top_urls if section == "top-urls" else result.urls, "url")
    if section == "statuses":
        return [
            {"status": b, "requests": n, "share %": _percent(n, total.requests)}
            for b, n in total.by_bucket.items()
        ]
    if section == "client-statuses":
        return [
            {"client": row.name, **{f"status {b}": row.by_bucket[b] for b in BUCKETS}}
            for row in result.clients
        ]
    if section == "client-urls":
        return [
            {
                "client": pair.client,
                "url": pair.url,
                "requests": pair.requests,
                "successful": pair.successful,
                "failed": pair.failed,
            }
            for pair in result.client_urls
        ]
    if section == "totals":
        return [
            {
                "requests": total.requests,
                "successful": total.successful,
                "failed": total.failed,
                "successful %": _percent(total.successful, total.requests),
                "failed %": _percent(total.failed, total.requests),
                "clients": len(result.clients),
                "urls": len(result.urls),
            }
        ]
    raise ValueError(f"unknown section {section!r}: expected one of {', '.join(SECTIONS)}")


def section_columns(section: str) -> list[str]:
    """A section's columns, even when the report has no rows for it."""
    return list(section_rows(report([Requests("c", "GET", "/", 200, 1)]), section)[0])


def to_csv(result: Report, sections: list[str]) -> str:
    """The sections as CSV (the csv module's quoting, formula-like cells made inert: a
    client id is the producer's text): one section's own columns, or, for
    several, a ``section`` column first and every section's columns after it (the CLI's
    ``--format csv`` and the API's export)."""
    several = len(sections) > 1
    columns = dict.fromkeys(["section"] if several else [])
    for name in sections:
        columns.update(dict.fromkeys(section_columns(name)))
    out = io.StringIO()
    # Cells picked in C (a report has 6,000 pairs); the csv module writes None as "".
    writer, cells = csv.writer(out, lineterminator="\n"), itemgetter(*columns)
    writer.writerow(columns)
    for name in sections:
        blank = dict.fromkeys(columns, "") | ({"section": name} if several else {})
        writer.writerows(safe_row(cells(blank | row)) for row in section_rows(result, name))
    return out.getvalue()
