"""Which shard of the usage stream an event belongs on (DESIGN.md section 7, a contract).

With ``TALLY_STREAM_SHARDS=N`` > 1 the stream is N keys ``<stream>:{0}`` … ``<stream>:{N-1}``
(the braces are a Redis Cluster hash tag: each shard lives in one slot, and its auxiliary
keys, e.g. ``<stream>:{3}:incidents``, in the same one). An event goes on shard
``int.from_bytes(sha256(subject as UTF-8).digest()[:8], "big") % N``, so a producer in any
language routes the same way. With N = 1 the stream is the single key ``<stream>``.
"""

from __future__ import annotations

import hashlib


def shard_of(subject: str, shards: int) -> int:
    """The shard of an event whose ``subject`` (the organization billed) is ``subject``."""
    digest = hashlib.sha256(subject.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % shards


def shard_key(stream: str, shard: int, shards: int) -> str:
    """The key of shard ``shard`` of ``shards``: ``stream`` itself when there is one."""
    if not 0 <= shard < shards:
        raise ValueError(f"shard {shard} does not exist: shards are 0 to {shards - 1}")
    return stream if shards == 1 else f"{stream}:{{{shard}}}"


def shard_keys(stream: str, shards: int) -> list[str]:
    """Every shard's key, in shard order."""
    return [shard_key(stream, shard, shards) for shard in range(shards)]


def parse_shards(text: str, shards: int) -> list[int]:
    """``"0,2"``: a subset of the shards, for one of several consumer processes."""
    try:
        chosen = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise ValueError(
            f"shards {text!r}: shard numbers separated by commas, like '0,2'"
        ) from None
    wrong = [shard for shard in chosen if not 0 <= shard < shards]
    if not chosen or wrong:
        raise ValueError(
            f"shards {text!r}: with TALLY_STREAM_SHARDS={shards} the shards are 0 to {shards - 1}"
        )
    return chosen


def split_shards(shards: int, processes: int) -> list[list[int]]:
    """The shards each of ``processes`` consumer processes reads: dealt round-robin; with
    more processes than shards, several share a shard (one consumer group)."""
    if processes < 1:
        raise ValueError("at least one process")
    if processes >= shards:
        return [[n % shards] for n in range(processes)]
    return [list(range(n, shards, processes)) for n in range(processes)]
