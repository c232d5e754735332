"""Which Redis errors a consumer or producer waits out (a failover) and which it raises."""

from __future__ import annotations

import pytest
from redis.exceptions import NoScriptError, ResponseError

from tally.adapters.redis_client import failover


@pytest.mark.parametrize(
    "reply",
    [
        "UNBLOCKED force unblock from blocking operation, instance state changed",
        "ERR Error running script (call to f_1): @user_script:42: READONLY You can't write "
        "against a read only replica.",
        "NOSCRIPT No matching script. Please use EVAL.",
        "CLUSTERDOWN The cluster is down",
        "LOADING Redis is loading the dataset in memory",
    ],
)
def test_a_reply_of_a_failover_is_waited_out(reply: str) -> None:
    assert failover(ResponseError(reply))


def test_a_missing_script_is_waited_out_whatever_its_class() -> None:
    assert failover(NoScriptError("NOSCRIPT No matching script."))


@pytest.mark.parametrize(
    "reply",
    [
        "NOGROUP No such key 'tally:usage' or consumer group 'metering'",
        "ERR Error running script (call to f_1): @user_script:7: attempt to compare nil",
        "WRONGTYPE Operation against a key holding the wrong kind of value",
    ],
)
def test_any_other_error_is_raised(reply: str) -> None:
    assert not failover(ResponseError(reply))
