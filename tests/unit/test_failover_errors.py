"""Which Redis errors a consumer or producer waits out (a failover) and which it raises."""

from __future__ import annotations

import pytest
from redis.asyncio.connection import Connection as AsyncConnection
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


async def test_a_connection_closed_under_a_command_is_waited_out() -> None:
    """What a cluster client's command met in CI's failover test: another task closed the
    node's connection (its writer gone) while the command was being sent."""
    closed = AsyncConnection()  # never connected: no writer, as after a disconnect
    with pytest.raises(AttributeError) as raised:
        await closed._send_packed_command([b"*1\r\n$4\r\nPING\r\n"])
    assert failover(raised.value)


def test_an_attribute_error_of_anything_else_is_raised() -> None:
    with pytest.raises(AttributeError) as raised:
        None.writelines  # type: ignore[attr-defined]  # noqa: B018
    assert not failover(raised.value)
