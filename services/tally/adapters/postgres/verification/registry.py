"""The checks of ``tally ledger verify``, by name: each module of this package registers its
own with :func:`check`, and the CLI's help, ``--check`` and the docs' list read
:data:`CHECKS` (so a new check is one decorated function, listed nowhere by hand)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import asyncpg

from tally.adapters.postgres.reads.rate_cards import load_rate_cards
from tally.domain.ratecard import RateCardBook


@dataclass
class Finding:
    check: str  # the finding's kind (``unbalanced``, ``seal``, ...), as the JSON names it
    detail: str


@dataclass
class Verification:
    entries: int = 0
    lines: int = 0
    events: int = 0
    lanes: int = 0
    tallies: int = 0
    seals: int = 0
    tally_heads: list[dict[str, object]] = field(default_factory=list)  # keep outside, too
    heads: list[dict[str, object]] = field(default_factory=list)  # to keep outside the database
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    def add(self, check: str, detail: str) -> None:
        self.findings.append(Finding(check, detail))


@dataclass
class Context:
    """What a check reads from (one repeatable-read, read-only transaction) and adds to."""

    conn: asyncpg.Connection
    result: Verification
    period: str | None = None  # narrows the seal check to one period's seals
    _book: RateCardBook | None = None

    async def rate_cards(self) -> RateCardBook:
        if self._book is None:
            self._book = await load_rate_cards(self.conn)
        return self._book


Run = Callable[[Context], Awaitable[None]]


@dataclass(frozen=True)
class Check:
    name: str  # what ``--check`` takes
    promise: str  # what the ledger promises, which the check re-derives
    findings: tuple[str, ...]  # the kinds of finding it reports
    run: Run


CHECKS: dict[str, Check] = {}  # in the order they run


def check(name: str, promise: str, *findings: str) -> Callable[[Run], Run]:
    """Register ``run`` as the check ``name``; ``findings`` are the kinds it may report."""

    def register(run: Run) -> Run:
        if name in CHECKS:
            raise ValueError(f"verify check {name!r} is registered twice")
        CHECKS[name] = Check(name, promise, findings, run)
        return run

    return register
