"""``tally estimate``: a month's AI tokens and API requests, and their cost, before they happen."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated

import typer
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine

from tally.adapters.postgres.connection import raw_connection
from tally.adapters.postgres.reads.rate_cards import load_rate_cards
from tally.domain.estimate import EstimateInput, EstimateReport, Seats, estimate, report
from tally.domain.period import period_bounds
from tally.entrypoints.cli.context import with_engine
from tally.entrypoints.cli.rendering import Format, FormatOption, check_period, fail, print_rows


def _seat(text: str) -> Seats:
    """``gc2:named:200`` → 200 named gc2 users."""
    parts = text.split(":")
    if len(parts) != 3:
        raise typer.BadParameter(f"{text!r}: give LICENSE:MODEL:USERS, e.g. gc2:named:200")
    try:
        return Seats(license=parts[0], model=parts[1], users=Decimal(parts[2]))
    except (ValidationError, InvalidOperation) as exc:
        raise typer.BadParameter(
            f"{text!r}: a license (communicate, gc1, gc2, gc3), a model (named, concurrent, "
            "hourly) and a number of users (hours for hourly) ≥ 0"
        ) from exc


def estimate_command(
    seats: Annotated[
        list[str] | None,
        typer.Option("--seats", help="LICENSE:MODEL:USERS, repeatable (e.g. gc2:named:200)."),
    ] = None,
    currency: Annotated[str, typer.Option(help="Currency of the cost.")] = "USD",
    period: Annotated[
        str | None,
        typer.Option(
            help="Price with the rate card of this period YYYY-MM; default: this month.",
            callback=check_period,
        ),
    ] = None,
    working_days: Annotated[int, typer.Option(min=1, max=31, help="Working days a month.")] = 20,
    growth_percent: Annotated[str, typer.Option("--growth", help="Growth %.")] = "0",
    buffer_percent: Annotated[str, typer.Option("--buffer", help="Safety buffer %.")] = "0",
    copilot_users: Annotated[str, typer.Option(help="Agent Copilot users.")] = "0",
    copilot_tokens_per_user: Annotated[
        str,
        typer.Option(help="Copilot tokens a user a month (the AI token pricing page: budget 50)."),
    ] = "50",
    virtual_agent_sessions: Annotated[
        str, typer.Option(help="Virtual agent sessions a day.")
    ] = "0",
    scoring_interactions: Annotated[str, typer.Option(help="AI-scored interactions a day.")] = "0",
    voice_bot_minutes: Annotated[str, typer.Option(help="Voice bot minutes a day.")] = "0",
    translate_minutes: Annotated[str, typer.Option(help="AI Translate minutes a month.")] = "0",
    digital_bot_sessions: Annotated[str, typer.Option(help="Digital bot sessions a month.")] = "0",
    messages: Annotated[str, typer.Option(help="Messaging channel messages a month.")] = "0",
    social_posts: Annotated[str, typer.Option(help="Social posts a month.")] = "0",
    other_tokens: Annotated[str, typer.Option(help="Other AI tokens a month.")] = "0",
    interactions: Annotated[str, typer.Option(help="Interactions a day (API requests).")] = "0",
    requests_per_interaction: Annotated[
        str, typer.Option(help="API requests per interaction (data actions, polling).")
    ] = "0",
    other_requests: Annotated[str, typer.Option(help="Other API requests a month.")] = "0",
    fmt: FormatOption = Format.table,
) -> None:
    """Estimate a month of AI tokens and API requests against the allocation, with the
    overage and its cost, priced by the same rate card as billing."""
    try:
        given = EstimateInput(
            seats=tuple(_seat(text) for text in seats or ()),
            currency=currency.upper(),
            working_days=working_days,
            growth_percent=growth_percent,
            buffer_percent=buffer_percent,
            copilot_users=copilot_users,
            copilot_tokens_per_user=copilot_tokens_per_user,
            virtual_agent_sessions_per_day=virtual_agent_sessions,
            scoring_interactions_per_day=scoring_interactions,
            voice_bot_minutes_per_day=voice_bot_minutes,
            translate_minutes_per_month=translate_minutes,
            digital_bot_sessions_per_month=digital_bot_sessions,
            messages_per_month=messages,
            social_posts_per_month=social_posts,
            other_tokens_per_month=other_tokens,
            interactions_per_day=interactions,
            requests_per_interaction=requests_per_interaction,
            other_requests_per_month=other_requests,
        )
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise fail(problems) from exc
    start = period_bounds(period)[0] if period else datetime.now(UTC)

    async def priced(engine: AsyncEngine) -> EstimateReport:
        async with raw_connection(engine) as conn:
            card = (await load_rate_cards(conn)).in_effect(start)
        if card is None:
            raise LookupError(f"no rate card is in effect at {start:%Y-%m-%d}")
        return report(estimate(given, card))

    try:
        result = with_engine(priced)
    except ValueError as exc:
        raise fail(str(exc)) from exc
    if fmt is Format.json:
        typer.echo(result.model_dump_json(indent=2))
        return
    ai, api = result.ai_tokens.model_dump(), result.api_requests.model_dump()
    rows = [
        {"figure": figure.replace("_", " "), "AI tokens": ai[figure], "API requests": api[figure]}
        for figure in ai
        if figure != "unit"
    ]
    print_rows(rows, fmt, title=f"Estimate ({result.currency}, rate card {result.rate_card})")
    features = [{"feature": f, "tokens": t} for f, t in sorted(result.tokens_by_feature.items())]
    print_rows(features, fmt, title="AI tokens by feature")
    typer.echo(f"total cost: {result.total_cost} {result.currency}")


def register(app: typer.Typer) -> None:
    app.command("estimate")(estimate_command)
