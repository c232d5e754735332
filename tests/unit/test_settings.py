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
