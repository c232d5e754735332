"""Entries and accounts: balance, the account codes, the journal's hash chain."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

import asyncpg

from tally.adapters.postgres.carried import CARRIED_EVENTS
from tally.adapters.postgres.verification.chains import JOURNAL_CHAIN, walk_chain
from tally.adapters.postgres.verification.registry import Context, check
from tally.domain.ledger import Account, CarriedEvent, Entry, chain_hash, events_digest


@check(
    "accounts",
    "an account's code names its owner, period, unit and kind",
    "account",
)
async def accounts(ctx: Context) -> None:
    """An account's code (what the hash covers) names its owner, period, unit and kind."""
    conn, result = ctx.conn, ctx.result
    for row in await conn.fetch("SELECT * FROM account ORDER BY id"):
        named = Account(row["owner"], row["period"], row["unit"], row["kind"], row["feature"])
        if named.code != row["code"]:
            result.add("account", f"account {row['code']} is described as {named.code}")


@check(
    "balance",
    "each entry's lines sum to zero per unit, and an entry has two lines or more",
    "unbalanced",
    "too few lines",
)
async def balance(ctx: Context) -> None:
    conn, result = ctx.conn, ctx.result
    for row in await conn.fetch(
        """SELECT l.entry_id, a.unit, sum(l.amount) AS total FROM entry_line l
             JOIN account a ON a.id = l.account_id
            GROUP BY l.entry_id, a.unit HAVING sum(l.amount) <> 0 ORDER BY 1"""
    ):
        result.add("unbalanced", f"entry {row['entry_id']}: {row['unit']} sums to {row['total']}")
    for row in await conn.fetch(
        """SELECT e.id, count(l.id) AS n FROM journal_entry e
             LEFT JOIN entry_line l ON l.entry_id = e.id GROUP BY e.id HAVING count(l.id) < 2"""
    ):
        result.add("too few lines", f"entry {row['id']} has {row['n']} line(s)")


@check(
    "journal-chain",
    "each lane of the journal's hash chain runs without a gap, links each entry to its "
    "predecessor, every hash recomputes from the entry, its lines and its events, and the lane "
    "heads match",
    "chain gap",
    "chain broken",
    "hash mismatch",
    "lane head",
)
async def journal_chain(ctx: Context) -> None:
    conn, result = ctx.conn, ctx.result
    lines: dict[int, list[tuple[str, Decimal]]] = defaultdict(list)
    for row in await conn.fetch(
        "SELECT l.entry_id, a.code, l.amount FROM entry_line l "
        "JOIN account a ON a.id = l.account_id"
    ):
        lines[row["entry_id"]].append((row["code"], row["amount"]))
        result.lines += 1
    carried: dict[int, list[CarriedEvent]] = defaultdict(list)
    for row in await conn.fetch(
        f"SELECT carrier, source, id, sha256(raw) AS raw_hash FROM {CARRIED_EVENTS} c"
    ):
        carried[row["carrier"]].append((row["source"], row["id"], bytes(row["raw_hash"])))
    heads = {row["lane"]: row for row in await conn.fetch("SELECT * FROM ledger_lane ORDER BY 1")}
    result.lanes = len(heads)
    result.heads = [
        {"lane": lane, "seq": row["seq"], "head_hash": bytes(row["head_hash"]).hex()}
        for lane, row in heads.items()
    ]
    rows = await conn.fetch("SELECT * FROM journal_entry ORDER BY lane, seq")
    result.entries += len(rows)

    def expected(row: asyncpg.Record) -> bytes:
        entry = Entry(
            row["idempotency_key"],
            row["kind"],
            row["org"],
            row["period"],
            row["rate_card_version"],
            (),
        )
        return chain_hash(
            bytes(row["prev_hash"]),
            row["lane"],
            row["seq"],
            row["posted_at"],
            entry,
            lines.get(row["id"], []),
            events_digest(carried.get(row["id"], [])),
        )

    walk_chain(result, JOURNAL_CHAIN, heads, rows, expected, lambda row: f"entry {row['id']}")
