"""The cost estimator's page: only the seats the rate card allocates, problems named
above the form and beside their field."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import InvalidOperation
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from pydantic import ValidationError

from tally.adapters.postgres.connection import raw_connection
from tally.adapters.postgres.reads.rate_cards import load_rate_cards
from tally.domain.access import Scope
from tally.domain.estimate import EstimateInput, EstimateReport, estimate, report
from tally.domain.ratecard import RateCard
from tally.entrypoints.http.auth import scoped
from tally.entrypoints.pages.web import (
    NavLink,
    Refusal,
    engine,
    page,
    signed_in,
)

router = APIRouter()
NAV = (NavLink("Estimator", "estimate", 4),)


ai_fields = [
    ("copilot_users", "Agent Copilot users"),
    ("copilot_tokens_per_user", "Copilot tokens a user a month"),
    ("virtual_agent_sessions_per_day", "Virtual agent sessions a day"),
    ("scoring_interactions_per_day", "AI-scored interactions a day"),
    ("voice_bot_minutes_per_day", "Voice bot minutes a day"),
    ("translate_minutes_per_month", "AI Translate minutes a month"),
    ("digital_bot_sessions_per_month", "Digital bot sessions a month"),
    ("messages_per_month", "Messages a month"),
    ("social_posts_per_month", "Social posts a month"),
    ("other_tokens_per_month", "Other tokens a month"),
]
api_fields = [
    ("interactions_per_day", "Interactions a day"),
    ("requests_per_interaction", "API requests per interaction"),
    ("other_requests_per_month", "Other API requests a month"),
    ("working_days", "Working days a month"),
    ("growth_percent", "Growth %"),
    ("buffer_percent", "Buffer %"),
]
field_labels = dict(ai_fields + api_fields) | {"currency": "Currency"}
seat_rows = 3


async def card_now(request: Request) -> RateCard:
    async with raw_connection(engine(request)) as conn:
        card = (await load_rate_cards(conn)).in_effect(datetime.now(UTC))
    if card is None:
        raise Refusal(503, "No rate card", "No rate card is in effect: run `tally migrate`.")
    return card


def problems(exc: ValidationError, rows: list[int]) -> list[tuple[str, str]]:
    """Each problem as (the form field's id, a sentence naming it); ``rows``: the form's
    seat row of each seat given."""
    found = []
    for error in exc.errors():
        where = error["loc"]
        if where[:1] == ("seats",) and len(where) > 1 and isinstance(where[1], int):
            field, name = f"users{rows[where[1]]}", f"Users {rows[where[1]] + 1}"
        else:
            field = str(where[0]) if where else ""
            name = field_labels.get(field, field or "The estimate")
        found.append((field, f"{name}: {error['msg']}"))
    return found


def seat_input(seat: str, users: str) -> dict[str, str]:
    """A form's seat row (``gc2:named`` and its users) as the estimate takes it."""
    lic, _, model = seat.partition(":")
    return {"license": lic, "model": model, "users": users}


@router.get("/estimate", name="estimate", **scoped(Scope.usage_read))
async def estimate_page(request: Request) -> HTMLResponse:
    """Seats offer only the licence and model pairs the rate card allocates; a problem is
    said above the form and beside its field."""
    viewer = await signed_in(request)
    card = await card_now(request)
    query = request.query_params
    defaults = EstimateInput()
    values: dict[str, Any] = {
        name: query.get(name, str(getattr(defaults, name))) for name, _ in ai_fields + api_fields
    }
    values["currency"] = query.get("currency", defaults.currency)
    choices = [
        (f"{lic}:{model}", f"{lic} · {model}")
        for lic in sorted(card.api.allocation)
        for model in card.api.allocation[lic]
    ]
    chosen = list(zip(query.getlist("seat"), query.getlist("users"), strict=False))
    seats = [{"seat": seat, "users": users} for seat, users in chosen][:seat_rows]
    result: EstimateReport | None = None
    errors: list[tuple[str, str]] = []
    given_rows = [row for row, seat in enumerate(seats) if seat["seat"]]
    for row in given_rows:
        if seats[row]["seat"] not in dict(choices):
            errors.append(
                (f"seat{row}", f"Seat {row + 1}: rate card {card.version} allocates no "
                 f"{seats[row]['seat'].replace(':', ' ')}")
            )  # fmt: skip
    if query and not errors:
        try:
            given = EstimateInput.model_validate(
                {
                    **{k: v for k, v in values.items() if v != ""},
                    "seats": [seat_input(**seats[row]) for row in given_rows],
                }
            )  # fmt: skip
            result = report(estimate(given, card))
        except ValidationError as exc:
            errors = problems(exc, given_rows)
        except (ValueError, InvalidOperation) as exc:
            errors = [("", str(exc))]
    return page(
        request, "estimate.html", viewer, active="estimate", title="Cost estimator",
        values=values, seats=seats, result=result, errors=errors,
        invalid={field for field, _ in errors}, ai_fields=ai_fields, api_fields=api_fields,
        choices=choices, seat_rows=seat_rows, currencies=sorted(card.currencies),
        card_version=card.version,
    )  # fmt: skip
