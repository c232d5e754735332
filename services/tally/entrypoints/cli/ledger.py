"""``tally ledger …``: balances, accounts, entries, the trial balance, the ADS export,
verification and inclusion proofs."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy.ext.asyncio import AsyncEngine

from tally.adapters.postgres import seals
from tally.adapters.postgres.connection import raw_connection
from tally.adapters.postgres.reads import accounts as account_reads
from tally.adapters.postgres.reads import balances as balance_reads
from tally.adapters.postgres.reads import cursors, entries, gl_export, org_balances, trial_balance
from tally.adapters.postgres.reads.gl_export import Shape, Standard
from tally.adapters.postgres.verification import CHECKS, unknown, verify
from tally.adapters.tabular import StreamFormat
from tally.domain.pagination import DEFAULT_LIMIT, BadCursor
from tally.entrypoints.cli.context import all_rows, read_page, with_connection, with_engine
from tally.entrypoints.cli.rendering import (
    AfterOption,
    Format,
    FormatOption,
    LimitOption,
    check_period,
    console,
    errors,
    fail,
    parse_instant,
    print_page,
    print_rows,
)
from tally.entrypoints.plain import verification_summary

ledger_app = typer.Typer(help="Balances and tamper evidence.", no_args_is_help=True)


@ledger_app.command("balances")
def balances(
    org: Annotated[str, typer.Option(help="Organization (or 'platform').")],
    period: Annotated[
        str | None,
        typer.Option(help="Billing period YYYY-MM; all when omitted.", callback=check_period),
    ] = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Each account's balance (debits positive) for an organization and period."""
    found = with_connection(lambda conn: org_balances.balances(conn, org, period))
    rows = [row.model_dump() for row in found]
    print_rows(rows, fmt, f"balances of {org}" + (f" for {period}" if period else ""))


PeriodOption = Annotated[
    str | None, typer.Option(help="Billing period YYYY-MM.", callback=check_period)
]


@ledger_app.command("accounts")
def accounts_command(
    org: Annotated[str | None, typer.Option(help="Owner: an organization or 'platform'.")] = None,
    period: PeriodOption = None,
    unit: Annotated[str | None, typer.Option(help="api_request, ai_token or a currency.")] = None,
    kind: Annotated[str | None, typer.Option(help="allowance, usage, receivable, ...")] = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Accounts with their debits, credits and balance (debits positive)."""
    filters = account_reads.AccountFilter(org=org, period=period, unit=unit, kind=kind)
    rows = with_connection(lambda conn: all_rows(conn, account_reads.account_listing(filters)))
    if fmt is Format.table:  # the code names owner, period, unit and kind
        rows = [{k: row[k] for k in ("code", "debits", "credits", "balance")} for row in rows]
    print_rows(rows, fmt, "accounts")


@ledger_app.command("balance")
def balance_command(
    account: Annotated[
        str, typer.Argument(help="Account code, e.g. org/acme/2026-11/api_request/usage.")
    ],
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="Instant (RFC 3339); default: now.")
    ] = None,
    limit: LimitOption = 20,
    after: AfterOption = None,
    fmt: FormatOption = Format.table,
) -> None:
    """An account's balance as of any instant, with the movements (newest first) that make it."""
    instant = parse_instant(as_of)

    async def work(engine: AsyncEngine) -> balance_reads.Balance | None:
        async with raw_connection(engine) as conn:
            signed = await cursors(conn)
            return await balance_reads.balance(conn, account, signed, instant, after, limit)

    try:
        found = with_engine(work)
    except BadCursor as exc:
        raise fail(str(exc), 2) from exc
    if found is None:
        raise fail(f"no account {account!r} (see `tally ledger accounts`)")
    if fmt is Format.json:
        print_rows(found.model_dump(), fmt)
        return
    console.print(
        f"[bold]{found.account}[/bold] as of {found.as_of.isoformat()}: balance "
        f"{found.balance:f} {found.unit} (debits {found.debits:f}, credits {found.credits:f})",
        highlight=False,
    )
    print_page(found.movements, fmt, "movements")


@ledger_app.command("trial-balance")
def trial_balance_command(
    period: Annotated[str, typer.Option(help="Billing period YYYY-MM.", callback=check_period)],
    unit: Annotated[str | None, typer.Option(help="Only this unit.")] = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Per account: opening balance, the period's debits and credits, closing balance; per
    unit the totals (debits equal credits). Exit 1 if a unit does not balance."""

    async def work(engine: AsyncEngine) -> trial_balance.TrialBalance:
        async with raw_connection(engine) as conn:
            return await trial_balance.trial_balance(conn, period, unit)

    found = with_engine(work)
    if fmt is Format.json:
        print_rows({**found.model_dump(), "balanced": found.balanced}, fmt)
    else:
        shown = found.model_dump()
        print_rows(shown["rows"], fmt, f"trial balance {period}")
        print_rows(shown["totals"], fmt, "totals per unit")
    if not found.balanced:
        raise typer.Exit(1)


@ledger_app.command("entries")
def entries_command(
    org: Annotated[str | None, typer.Option(help="Organization.")] = None,
    period: PeriodOption = None,
    kind: Annotated[str | None, typer.Option(help="usage, grant, expiry, overage, ...")] = None,
    account: Annotated[str | None, typer.Option(help="Only entries with a line on it.")] = None,
    posted_from: Annotated[str | None, typer.Option(help="Posted at or after (RFC 3339).")] = None,
    posted_to: Annotated[str | None, typer.Option(help="Posted before (RFC 3339).")] = None,
    limit: LimitOption = DEFAULT_LIMIT,
    after: AfterOption = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Journal entries, oldest first, a page at a time."""
    filters = entries.EntryFilter(
        org=org,
        period=period,
        kind=kind,
        account=account,
        posted_from=parse_instant(posted_from),
        posted_to=parse_instant(posted_to),
    )
    print_page(read_page(entries.entry_listing(filters), after, limit), fmt, "entries")


@ledger_app.command("entry")
def entry_command(
    entry_id: Annotated[int, typer.Argument(metavar="ID", help="The entry's id.")],
    raw: Annotated[bool, typer.Option("--raw", help="Include each event's raw bytes.")] = False,
    fmt: FormatOption = Format.table,
) -> None:
    """One entry: its lines, the events it carries (SHA-256 of their raw bytes) and its
    position in the hash chain."""

    async def work(engine: AsyncEngine) -> entries.EntryDetail | None:
        async with raw_connection(engine) as conn:
            return await entries.entry(conn, entry_id, raw)

    found = with_engine(work)
    if found is None:
        raise fail(f"no entry {entry_id}")
    if fmt is Format.json:
        print_rows(found.model_dump(), fmt)
        return
    chain = found.chain
    console.print(
        f"[bold]entry {found.id}[/bold] {found.kind} · {found.org or 'platform'} · "
        f"{found.period} · posted {found.posted_at.isoformat()} · key {found.idempotency_key}\n"
        f"lane {chain.lane} seq {chain.seq} · prev {chain.prev_hash} · hash {chain.hash}",
        highlight=False,
    )
    print_rows([row.model_dump() for row in found.lines], fmt, "lines")
    print_rows([row.model_dump() for row in found.events], fmt, "events carried")


@ledger_app.command("export")
def export_command(
    period: Annotated[str, typer.Option(help="Billing period YYYY-MM.", callback=check_period)],
    standard: Annotated[
        Standard, typer.Option(help="ads: the AICPA Audit Data Standard.")
    ] = Standard.ads,
    shape: Annotated[Shape, typer.Option(help="gl-detail or trial-balance.")] = Shape.gl_detail,
    fmt: Annotated[
        StreamFormat, typer.Option("--format", "-f", help="csv or json.")
    ] = StreamFormat.csv,
    output: Annotated[
        Path | None, typer.Option(help="Write to this file; default: standard output.")
    ] = None,
) -> None:
    """The period's general ledger in the Audit Data Standard, streamed (flat memory).
    Units that are not money (api_request, ai_token) stand in the amountCurrency column."""
    write = gl_export.write_gl_detail if shape is Shape.gl_detail else gl_export.write_trial_balance

    async def work(engine: AsyncEngine) -> int:
        async with raw_connection(engine) as conn:
            if output is None:
                return await write(conn, period, sys.stdout, fmt)
            with output.open("w", encoding="utf-8", newline="") as out:
                return await write(conn, period, out, fmt)

    written = with_engine(work)
    if output is not None:
        errors.print(f"{written} {shape.value} rows of {period} written to {output}")


def _verify_help() -> str:
    """The command's help: what it promises, then each check by name (from the registry)."""
    listed = "\n\n".join(f"{c.name}: {c.promise}." for c in CHECKS.values())
    return (
        "Re-derive what the ledger promises and name every breach; exit 1 on any finding. "
        f"The checks (all by default; --check NAME for some):\n\n{listed}"
    )


def _known_checks(names: list[str] | None) -> list[str] | None:
    if names and (wrong := unknown(names)):
        raise typer.BadParameter(
            f"no check named {', '.join(map(repr, wrong))}; the checks: {', '.join(CHECKS)}"
        )
    return names or None


@ledger_app.command("verify", help=_verify_help())
def verify_command(
    period: Annotated[
        str | None,
        typer.Option(
            help="Recompute only this period's month seals (YYYY-MM); every other check "
            "covers the whole ledger.",
            callback=check_period,
        ),
    ] = None,
    checks: Annotated[
        list[str] | None,
        typer.Option(
            "--check",
            metavar="NAME",
            help="Run only this check (repeatable); the names are listed above.",
            callback=_known_checks,
        ),
    ] = None,
    fmt: FormatOption = Format.table,
) -> None:
    result = with_engine(lambda engine: verify(engine, period, checks))
    summary = verification_summary(result)
    findings = summary["findings"]
    if fmt is Format.json:
        print_rows(summary, fmt)
    else:
        ran = f" ({', '.join(checks)})" if checks else ""
        console.print(
            f"checked{ran} {result.entries} entries, {result.lines} lines, {result.events} "
            f"events, {result.lanes} lanes, {result.tallies} delivery tallies, "
            f"{result.seals} month seals"
        )
        if result.findings:
            print_rows(findings, fmt, "findings")
        else:
            console.print("[green]✓ ledger verified: no findings[/green]")
    if not result.ok:
        raise typer.Exit(1)


@ledger_app.command("prove")
def prove(
    entry_id: Annotated[int, typer.Argument(metavar="ENTRY_ID", help="A journal entry's id.")],
    json_: Annotated[bool, typer.Option("--json", help="The same as --format json.")] = False,
    fmt: FormatOption = Format.table,
) -> None:
    """The Merkle inclusion proof of one entry in its period's month seal: check it with
    the script of the docs' page "The month seal", against the root printed on the period's
    invoices."""
    try:
        proof = with_engine(lambda engine: seals.prove_entry(engine, entry_id))
    except seals.NotSealed as exc:
        raise fail(str(exc)) from exc
    if proof is None:
        raise fail(f"there is no entry {entry_id}")
    if json_ or fmt is Format.json:
        print_rows(proof.model_dump(), Format.json)
        return
    console.print(
        f"entry {proof.entry_id} is leaf {proof.index} of {proof.entries} in seal "
        f"{proof.sequence} of {proof.period} (sealed {proof.sealed_at.isoformat()})"
    )
    console.print(f"leaf (the entry's hash): {proof.leaf}", highlight=False)
    print_rows([step.model_dump() for step in proof.siblings], fmt, "siblings, leaf to root")
    console.print(f"root: {proof.root}", highlight=False)


def register(app: typer.Typer) -> None:
    app.add_typer(ledger_app, name="ledger")
