"""AI token conversion: posting running-total differences never depends on the batching."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from math import ceil

from hypothesis import given
from hypothesis import strategies as st

from tally.adapters.ratecard_files import bundled_cards

CARD = bundled_cards()[0]
FEATURES = sorted(CARD.ai.features.items())


@given(
    quantities=st.lists(
        st.decimals(min_value=0, max_value=10**6, places=4, allow_nan=False), max_size=20
    ),
    feature=st.sampled_from([name for name, _ in FEATURES]),
)
def test_token_conversion_does_not_depend_on_batching(
    quantities: list[Decimal], feature: str
) -> None:
    """Posting the difference of running-total conversions adds up to the total's conversion."""
    running, posted = Decimal(0), Decimal(0)
    for quantity in quantities:
        posted += CARD.tokens(feature, running + quantity) - CARD.tokens(feature, running)
        running += quantity
    assert posted == CARD.tokens(feature, running)
    conversion = CARD.ai.features[feature]
    exact = Fraction(running) * conversion.tokens / conversion.per
    assert Fraction(posted) >= exact
    assert ceil(Fraction(posted)) == ceil(exact)
