"""The rate card: allocations, prices and conversions as versioned, effective-dated data.

A card is plain data (``ratecards/*.toml`` in the package, loaded into PostgreSQL by
``tally migrate``). Every ledger entry records the version that priced it, so a later
card never reprices the past.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import ROUND_CEILING, Decimal, localcontext
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

LicenseName = Literal["communicate", "gc1", "gc2", "gc3"]
LicenseModel = Literal["named", "concurrent", "hourly"]
Amount = Annotated[Decimal, Field(ge=0, allow_inf_nan=False)]


class _Data(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FeatureConversion(_Data):
    unit: str
    tokens: Annotated[int, Field(ge=0)]
    per: Annotated[int, Field(ge=1)]


class ApiCard(_Data):
    billable_client_kinds: frozenset[str]
    non_billable_client_kinds: frozenset[str]
    allocation: dict[LicenseName, dict[LicenseModel, Annotated[int, Field(ge=0)]]]
    price: dict[str, Amount]


class AiCard(_Data):
    token_scale: Annotated[int, Field(ge=0, le=12)]
    overage_whole_tokens: Literal["up", "half_up", "none"]
    allocation: dict[LicenseModel, Annotated[int, Field(ge=0)]]
    price: dict[str, Amount]
    features: dict[str, FeatureConversion]


class RateCard(_Data):
    version: str
    effective_from: AwareDatetime
    note: str = ""
    currencies: dict[str, Annotated[int, Field(ge=0, le=6)]]
    api: ApiCard
    ai: AiCard

    @field_validator("effective_from")
    @classmethod
    def _starts_a_month(cls, value: datetime) -> datetime:
        """Allocations are monthly: a card takes effect at a period's first instant, so one
        card prices a whole period, its events and its close alike."""
        utc = value.astimezone(UTC)
        if (utc.day, utc.hour, utc.minute, utc.second, utc.microsecond) != (1, 0, 0, 0, 0):
            raise ValueError("a rate card takes effect at the start of a UTC month (day 1, 00:00Z)")
        return value

    def tokens(self, feature: str, quantity: Decimal) -> Decimal:
        """Tokens for a feature's cumulative quantity, rounded up to ``token_scale``.

        Rounding the cumulative total (not each event) keeps the ledger's tokens equal to
        the exact conversion of everything used, whatever the batching: rounding up at
        the scale never changes the whole-token ceiling that overage is billed on.
        """
        conversion = self.ai.features[feature]
        with localcontext() as exact_enough:  # enough digits for any running total
            exact_enough.prec = 60
            exact = quantity * conversion.tokens / conversion.per
            return exact.quantize(Decimal(1).scaleb(-self.ai.token_scale), rounding=ROUND_CEILING)


class RateCardBook:
    """All known cards; picks the one in effect at an instant."""

    def __init__(self, cards: Iterable[RateCard]) -> None:
        self.cards = sorted(cards, key=lambda card: card.effective_from)
        if not self.cards:
            raise ValueError("no rate card loaded: run `tally migrate`")
        self._newest_first = [(c.effective_from.timestamp(), c) for c in reversed(self.cards)]
        self._alone: dict[str, RateCardBook] = {}

    def as_metered(self, version: str) -> RateCardBook | None:
        """A book of the card ``version`` alone (None: not loaded): a stored event is rated
        again by the card that metered it, never by one loaded since and in effect earlier."""
        if version not in self._alone:
            card = next((c for c in self.cards if c.version == version), None)
            if card is None:
                return None
            self._alone[version] = RateCardBook([card])
        return self._alone[version]

    def in_effect(self, at: datetime) -> RateCard | None:
        """The newest card whose ``effective_from`` is not after ``at`` (None before all)."""
        instant = at.timestamp()
        for start, card in self._newest_first:
            if start <= instant:
                return card
        return None

    @property
    def currencies(self) -> frozenset[str]:
        return frozenset(self.cards[-1].currencies)


def parse_card(text: str) -> RateCard:
    return RateCard.model_validate(tomllib.loads(text, parse_float=Decimal))
