"""Settings refused at start-up: a wildcard trusted proxy would let any client choose the
address it is counted under."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tally.config import Settings


@pytest.mark.parametrize("proxies", ["*", " * ", "10.0.0.9, *"])
def test_a_wildcard_trusted_proxy_is_refused(proxies: str) -> None:
    with pytest.raises(ValidationError, match="only the reverse proxies' own addresses"):
        Settings(trusted_proxies=proxies)


def test_the_proxies_own_addresses_are_accepted() -> None:
    assert Settings(trusted_proxies="10.0.0.9, 10.0.0.10").trusted_proxies == "10.0.0.9, 10.0.0.10"
    assert Settings(trusted_proxies="").trusted_proxies == ""


@pytest.mark.parametrize(
    ("setting", "value"), [("batch_size", 10_001), ("batch_max_bytes", 16 * 1024 * 1024 + 1)]
)
def test_a_batch_past_the_measured_largest_is_refused(setting: str, value: int) -> None:
    """The consumer's memory is measured at the largest batch allowed; nothing larger runs."""
    with pytest.raises(ValidationError, match="less than or equal to"):
        Settings(**{setting: value})
    assert getattr(Settings(**{setting: value - 1}), setting) == value - 1
