"""How the pages write numbers and times, one format everywhere: money in its currency's minor
unit (CLDR, via Babel), prices with every digit they have, API requests as whole numbers and
AI tokens to two decimals (each with its exact value on hover: a finance user reads the
rounding, an auditor the digits; exports stay exact), percentages to one decimal, times in
the viewer's zone (``tally.js``) with UTC on hover."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal

from babel.numbers import (
    format_compact_decimal,
    format_currency,
    get_currency_precision,
)
from markupsafe import Markup, escape

from tally.domain.invoicing import FEATURES_USED

LOCALE = "en_US"


def money(amount: Decimal, currency: str) -> str:
    """An amount already rounded to its currency's minor unit (JPY: none)."""
    return format_currency(amount, currency, locale=LOCALE)


def price(unit_price: Decimal, currency: str) -> str:
    """A unit price keeps every digit it has (USD 0.0001 is not $0.00)."""
    return format_currency(
        unit_price,
        currency,
        format="¤#,##0." + "0" * get_currency_precision(currency) + "#" * 10,
        locale=LOCALE,
        currency_digits=False,
        decimal_quantization=False,
    )


def qty(value: Decimal | int) -> str:
    """Every digit, thousands grouped, as en_US writes them (Babel's ``format_decimal``
    gives the same text, 40 times slower: the API usage report writes thousands of these)."""
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value.normalize() if value else Decimal(0):,f}"


WHOLE, CENTS = Decimal(1), Decimal("0.01")


def _rounded(value: Decimal | int, step: Decimal) -> Markup:
    """``value`` rounded half up (the invoice's rule) to ``step``, its exact digits on hover."""
    if isinstance(value, int):
        return Markup(f"{value:,}")
    shown = value.quantize(step, ROUND_HALF_UP)
    text = f"{shown:,.0f}" if step == WHOLE else f"{shown:,.2f}"
    if shown == value:
        return Markup(text)
    return Markup('<span class="exact" title="exactly {}">{}</span>').format(qty(value), text)


def requests(value: Decimal | int) -> Markup:
    """API requests are counted whole; a fractional allocation (hourly licences: hours x
    the rate) or a projection is shown rounded as the invoice rounds, exact on hover."""
    return _rounded(value, WHOLE)


def tokens(value: Decimal | int) -> Markup:
    """AI tokens to two decimals (the ledger keeps six), exact on hover."""
    return _rounded(value, CENTS)


def units(unit: str, value: Decimal | int) -> Markup:
    """A meter's figure by its unit (``api_request``/``api_requests`` or AI tokens)."""
    return requests(value) if unit.startswith("api_request") else tokens(value)


def when(moment: datetime) -> Markup:
    """A time: UTC to the minute (what a page without scripts shows), rewritten by
    ``tally.js`` into the viewer's zone; the UTC time to the second on hover."""
    utc = moment.astimezone(UTC)
    return Markup('<time datetime="{}" title="{} UTC">{} UTC</time>').format(
        utc.isoformat(timespec="seconds"),
        utc.strftime("%Y-%m-%d %H:%M:%S"),
        utc.strftime("%Y-%m-%d %H:%M"),
    )


def label(name: str) -> str:
    """A human label for a snake_case name (a feature, a meter): ``ai_scoring`` is
    "AI scoring", ``api_requests`` "API requests", ``agent_copilot`` "Agent copilot"."""
    acronyms = {"ai": "AI", "api": "API"}
    words = [acronyms.get(word, word) for word in name.split("_")]
    text = " ".join(words)
    return text[:1].upper() + text[1:]


def identifier(text: str) -> Markup:
    """An id shown whole: it may break only at its own separators (``/ - _ . :``), never
    inside a token of letters or digits."""
    parts = escape(text)
    for mark in "/-_.:":
        parts = Markup(parts.replace(mark, Markup(f"{mark}<wbr>")))
    return Markup('<span class="ident">{}</span>').format(parts)


def pct(value: Decimal | None) -> str:
    return "—" if value is None else f"{value.quantize(Decimal('0.1'))} %"


def short(value: Decimal) -> str:
    """An axis label: 12K, 1.5M."""
    return format_compact_decimal(value, locale=LOCALE, fraction_digits=1)


def share(part: int, whole: int) -> Decimal:
    return Decimal(0) if not whole else (Decimal(part) * 100 / whole).quantize(Decimal("0.01"))


def line_title(description: str) -> str:
    """An invoice line's description without its list of tokens per feature (the invoice
    shows them in their own table, with human labels)."""
    return description.split(FEATURES_USED, 1)[0]


def hash_text(digest: str) -> Markup:
    """A long hex digest: its first 12 digits, all of them on hover."""
    return Markup('<span class="mono" title="{}">{}…</span>').format(digest, digest[:12])
