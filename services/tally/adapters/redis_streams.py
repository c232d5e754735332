"""Redis Streams plumbing of the metering consumer: bounded reads, claims, status, trimming.

Every read that hands entries to Tally is a Lua script, for three reasons:
- **bounded by bytes as well as by count**: the script looks at what it is about to
  deliver and delivers only as many entries as fit in the batch's byte budget, so a
  backlog of large entries never floods the consumer's memory (an entry over the size
  limit comes back as its id and size only; the caller reads it alone);
- **raw field lists**: a script's reply keeps every field of an entry in order, so a
  repeated field is visible (redis-py and FastStream return a dict, which drops it);
- **atomic checks**: entries trimmed from the stream before the group read them are
  counted from the stream's and group's counters (Redis 7) and logged to
  ``<stream>:incidents`` (on a cluster, a key in the stream's slot: ``redis_client.companion_key``)
  in the same step as the read that skips them, or that finds
  nothing left, which also moves the group past them: a crash neither loses the record nor
  makes it twice.

A group created from id 0 (never ``$``, which skips what is already there) is the start.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.exceptions import ResponseError

from tally.adapters.ports.streams import (
    Claim,
    GroupStatus,
    Read,
    StreamStatus,
    UnsupportedServer,
)
from tally.adapters.redis_client import RedisClient, companion_key
from tally.adapters.redis_client import connect as connect
from tally.domain.rating import OversizedEntry, StreamEntry

LUA_HELPERS = """
local function map_of(flat)
  local t = {}
  for i = 1, #flat, 2 do t[flat[i]] = flat[i + 1] end
  return t
end
local function group_info(stream, group)
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
    local t = map_of(g)
    if t['name'] == group then return t end
  end
  return nil
end
local function size_of(fields)
  local n = 0
  for _, v in ipairs(fields) do n = n + #v end
  return n
end
local function shaped(entry, cap)
  local size = size_of(entry[2])
  if size > cap then return {entry[1], size} end
  return entry
end
"""

# KEYS: stream, incident log. ARGV: group, consumer, count, byte budget, entry cap, now (ms).
# Reply: {lost, {entry...}}; an entry is {id, {name, value, ...}} or {id, size} when oversized.
READ_NEW = (
    LUA_HELPERS
    + """
local stream, log = KEYS[1], KEYS[2]
local group, consumer = ARGV[1], ARGV[2]
local count, budget, cap = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local info = group_info(stream, group)
if not info then return redis.error_reply('NOGROUP no consumer group ' .. group) end
local last = info['last-delivered-id']
local lost = 0
-- Redis 7 counts entries read per group (nil for a group that has read nothing yet: it
-- read 0; nil also after reading past an XDEL made the count unknown: no count, no check).
local read = info['entries-read']
if read == false and last == '0-0' then read = 0 end
-- Entries the stream added that the group neither read nor can still read are lost:
-- entries-added - entries-read - the unread entries still there. Counted when no unread entry
-- lies before a lost one: nothing left after the group's last id (an emptied stream: lost up
-- to its last generated id), or the stream's head right after it (trimmed: lost up to the
-- head). In the same step the group moves past the loss: it is logged once, whoever reads.
if read then
  local behind = redis.call('XRANGE', stream, '(' .. last, '+', 'COUNT', 1)
  local none_left = #behind == 0
  if none_left or redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)[1][1] == behind[1][1] then
    local s = map_of(redis.call('XINFO', 'STREAM', stream))
    local to, before, unread = last, nil, s['length']
    if none_left then
      to, unread = s['last-generated-id'], 0
      local ms, seq = string.match(to, '^(%d+)-(%d+)$')
      before = string.format('%s-%d', ms, tonumber(seq) + 1)
    else
      before = behind[1][1]
    end
    local missing = s['entries-added'] - read - unread
    if missing > 0 then
      lost = missing
      redis.call('XADD', log, '*', 'group', group, 'lost', missing, 'after', last,
                 'before', before, 'detected_ms', ARGV[6])
      redis.call('XGROUP', 'SETID', stream, group, to, 'ENTRIESREAD', read + missing)
    end
  end
end
local fit, used, start, chunk, big = 0, 0, '(' .. last, 1, false
while fit < count do
  local page = redis.call('XRANGE', stream, start, '+', 'COUNT', math.min(chunk, count - fit))
  if #page == 0 then break end
  local full = false
  for _, entry in ipairs(page) do
    local size = size_of(entry[2])
    local cost = math.min(size, cap)
    if fit > 0 and used + cost > budget then full = true break end
    fit, used, big = fit + 1, used + cost, big or size > cap
  end
  if full then break end
  start, chunk = '(' .. page[#page][1], chunk * 2
end
if fit == 0 then return {lost, {}} end
local entries = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', fit,
                           'STREAMS', stream, '>')[1][2]
if big then  -- only then is an entry reshaped (most batches go back as Redis gave them)
  for i, entry in ipairs(entries) do entries[i] = shaped(entry, cap) end
end
return {lost, entries}
"""
)

# KEYS: stream. ARGV: byte budget, entry cap, id... Reply: the entries that fit, in order;
# a deleted entry is {id, -1}. Reads pending entries (own or just claimed) by id.
FETCH = (
    LUA_HELPERS
    + """
local budget, cap = tonumber(ARGV[1]), tonumber(ARGV[2])
local out, used = {}, 0
for i = 3, #ARGV do
  local page = redis.call('XRANGE', KEYS[1], ARGV[i], ARGV[i])
  if #page == 0 then
    out[#out + 1] = {ARGV[i], -1}
  else
    local cost = math.min(size_of(page[1][2]), cap)
    if #out > 0 and used + cost > budget then break end
    used = used + cost
    out[#out + 1] = shaped(page[1], cap)
  end
end
return out
"""
)

# KEYS: stream. ARGV: group, consumer, min idle ms, start id, count.
# Reply: {next start, claimed ids, deleted ids (Redis 7; empty on 6.2)}.
CLAIM = """
local r = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4],
                     'COUNT', ARGV[5], 'JUSTID')
return {r[1], r[2], r[3] or {}}
"""

# KEYS: stream. Reply: {length, last generated id, entries added or false,
# {group, last delivered id, pending, oldest pending id or false, entries read, lag}...}
STATUS = (
    LUA_HELPERS
    + """
local s = map_of(redis.call('XINFO', 'STREAM', KEYS[1]))
local groups = {}
for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local t = map_of(g)
  local summary = redis.call('XPENDING', KEYS[1], t['name'])
  groups[#groups + 1] = {t['name'], t['last-delivered-id'], t['pending'], summary[2],
                         t['entries-read'] or false, t['lag'] or false}
end
local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
return {s['length'], s['last-generated-id'], s['entries-added'] or false,
        first[1] and first[1][1] or false, groups}
"""
)

# KEYS: stream. ARGV: ceiling id, 'trim' or 'bound'. The bound is the ceiling lowered to
# every group's oldest pending entry and first undelivered entry; 'trim' trims below it,
# exactly (no ``~``). Reply: {bound, entries removed}.
TRIM = (
    LUA_HELPERS
    + """
local function parse(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local function lower(a, b)
  local am, as = parse(a)
  local bm, bs = parse(b)
  if am < bm or (am == bm and as < bs) then return a end
  return b
end
local bound = ARGV[1]
for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local t = map_of(g)
  local summary = redis.call('XPENDING', KEYS[1], t['name'])
  if summary[2] then bound = lower(bound, summary[2]) end
  local ms, seq = parse(t['last-delivered-id'])
  bound = lower(bound, string.format('%d-%d', ms, seq + 1))
end
if ARGV[2] ~= 'trim' then return {bound, 0} end
return {bound, redis.call('XTRIM', KEYS[1], 'MINID', bound)}
"""
)


RAW = "return redis.call(ARGV[1], KEYS[1], unpack(ARGV, 2))"


async def raw_command(client: RedisClient, command: str, key: str, *args: Any) -> Any:
    """A command's reply as Redis sent it, fields as a flat list with repeats kept
    (redis-py would parse them into a dict, also through ``execute_command``)."""
    reply: Any = await client.eval(RAW, 1, key, command, *args)
    return reply


def incident_log(client: RedisClient, stream: str) -> str:
    """Where trimming incidents of ``stream`` are logged (a key the ``tally`` ACL user may
    write: it shares the stream's prefix; on a cluster, also its slot)."""
    return companion_key(client, stream, "incidents")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def ensure_group(client: RedisClient, stream: str, group: str) -> bool:
    """Create the group from id 0 (never ``$``: that skips what is already there).

    Returns False when it already existed; safe to call concurrently.
    """
    try:
        await client.xgroup_create(stream, group, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" in str(exc):
            return False
        raise
    return True


async def require_counters(client: RedisClient, stream: str) -> None:
    """Refuse a server without Redis 7's stream counters: the read script counts entries
    lost before any read with them, and without them it could not tell."""
    if (await stream_status(client, stream)).entries_added is not None:
        return
    # HELLO names the server and its version; INFO would too, but Tally's ACL user lacks it.
    hello: Any = await client.execute_command("HELLO")
    about = {
        _text(k): _text(v)
        for k, v in (
            hello.items() if isinstance(hello, dict) else zip(hello[::2], hello[1::2], strict=True)
        )
    }
    raise UnsupportedServer(
        f"{about['server'].capitalize()} {about['version']} keeps no stream counters "
        "(entries-added, entries-read), so entries removed from the stream before they were "
        "read would go unnoticed: Tally needs Redis 7+ or Valkey 8+"
    )


def id_key(stream_id: str) -> tuple[int, int]:
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)


class StreamReader:
    """One consumer's view of one stream and group, with batches bounded by bytes."""

    def __init__(
        self,
        client: RedisClient,
        stream: str,
        group: str,
        consumer: str,
        batch_size: int,
        batch_max_bytes: int,
        max_entry_bytes: int,
    ) -> None:
        self.client = client
        self.stream = stream
        self.group = group
        self.consumer = consumer
        self.batch_size = batch_size
        self.batch_max_bytes = batch_max_bytes
        self.max_entry_bytes = max_entry_bytes
        self._read_new = client.register_script(READ_NEW)
        self._fetch = client.register_script(FETCH)
        self._claim = client.register_script(CLAIM)

    async def read_new(self, now_ms: int) -> Read:
        """Entries never delivered to the group, as many as fit the batch (at least one)."""
        reply: Any = await self._read_new(
            keys=[self.stream, incident_log(self.client, self.stream)],
            args=[
                self.group,
                self.consumer,
                self.batch_size,
                self.batch_max_bytes,
                self.max_entry_bytes,
                now_ms,
            ],
        )
        return Read(await self._entries(reply[1]), int(reply[0]))

    async def wait_for_new(self, block_ms: int) -> None:
        """Block until the stream has an entry after the group's last delivered one."""
        status = await stream_status(self.client, self.stream)
        after = status.group(self.group).last_delivered_id
        await self.client.xread({self.stream: after}, count=1, block=block_ms)

    async def fetch(self, ids: Sequence[str]) -> list[StreamEntry]:
        """Pending entries by id, in order, as many as fit the batch; deleted ones empty."""
        if not ids:
            return []
        reply: Any = await self._fetch(
            keys=[self.stream], args=[self.batch_max_bytes, self.max_entry_bytes, *ids]
        )
        return await self._entries(reply)

    async def own_pending(self, after: str, count: int) -> list[str]:
        """Ids this consumer name was given but never acked (a previous run's crash)."""
        rows: Any = await self.client.xpending_range(
            self.stream,
            self.group,
            f"({after}" if after != "0" else "-",
            "+",
            count,
            consumername=self.consumer,
        )
        return [_text(row["message_id"]) for row in rows]

    async def claim_idle(self, min_idle_ms: int, start: str, count: int) -> Claim:
        """Take over entries other consumers left pending for ``min_idle_ms`` (dead ones)."""
        reply: Any = await self._claim(
            keys=[self.stream], args=[self.group, self.consumer, min_idle_ms, start, count]
        )
        return Claim(_text(reply[0]), [_text(i) for i in reply[1]], [_text(i) for i in reply[2]])

    async def ack(self, ids: Sequence[str]) -> None:
        if ids:
            await self.client.xack(self.stream, self.group, *ids)

    async def _entries(self, reply: Any) -> list[StreamEntry]:
        entries: list[StreamEntry] = []
        for stream_id, body in reply:
            sid = _text(stream_id)
            if isinstance(body, int):
                entries.append((sid, [] if body < 0 else await self._oversized(sid)))
            elif len(body) == 2:  # one field: what producers send
                entries.append((sid, [(body[0], body[1])]))
            else:
                entries.append((sid, list(zip(body[::2], body[1::2], strict=True))))
        return entries

    async def _oversized(self, stream_id: str) -> OversizedEntry | list[tuple[bytes, bytes]]:
        """Read one oversized entry alone, keep its size, SHA-256 and first bytes only."""
        reply: Any = await raw_command(self.client, "XRANGE", self.stream, stream_id, stream_id)
        if not reply:
            return []
        flat = reply[0][1]
        pairs = list(zip(flat[::2], flat[1::2], strict=True))
        return OversizedEntry.of(pairs, self.max_entry_bytes)


async def stream_status(client: RedisClient, stream: str) -> StreamStatus:
    reply: Any = await client.eval(STATUS, 1, stream)
    length, last, added, first, groups = reply
    return StreamStatus(
        length=int(length),
        last_generated_id=_text(last),
        entries_added=None if added is None else int(added),
        first_entry_id=None if first is None else _text(first),
        groups=[
            GroupStatus(
                name=_text(name),
                last_delivered_id=_text(delivered),
                pending=int(pending),
                oldest_pending_id=None if oldest is None else _text(oldest),
                entries_read=None if read is None else int(read),
                lag=None if lag is None else int(lag),
            )
            for name, delivered, pending, oldest, read, lag in groups
        ],
    )


def drained(status: StreamStatus, group: str) -> bool:
    """Nothing left for the group: every entry delivered and acknowledged.

    Compared by ids, not by ``lag``: Redis has no lag once an XDEL made the group's count
    unknown (entries removed unread are counted, and passed, by the read script).
    """
    info = status.group(group)
    return info.pending == 0 and id_key(info.last_delivered_id) >= id_key(status.last_generated_id)


async def incidents(client: RedisClient, stream: str) -> list[dict[str, str]]:
    """The trimming incidents logged for ``stream`` (each with its log id)."""
    rows: Any = await client.xrange(incident_log(client, stream))
    return [
        {"incident_id": _text(sid)} | {_text(k): _text(v) for k, v in fields.items()}
        for sid, fields in rows
    ]


NO_CEILING = "18446744073709551615-18446744073709551615"  # the highest stream id


async def trim_bound(client: RedisClient, stream: str, ceiling: str = NO_CEILING) -> str:
    """The lowest id some group still needs (its oldest pending, or its next undelivered),
    at most ``ceiling``: what a trim to it would leave."""
    reply: Any = await client.eval(TRIM, 1, stream, ceiling, "bound")
    return _text(reply[0])


async def trim(client: RedisClient, stream: str, ceiling: str) -> tuple[str, int]:
    """Trim below ``ceiling`` and below what every group still needs; (min id, removed)."""
    reply: Any = await client.eval(TRIM, 1, stream, ceiling, "trim")
    return _text(reply[0]), int(reply[1])


NTH_NEWEST = """
local r = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', ARGV[1])
if #r < tonumber(ARGV[1]) then return false end
return r[#r][1]
"""


async def nth_newest_id(client: RedisClient, stream: str, n: int) -> str | None:
    """The id of the ``n``-th newest entry (None when the stream holds fewer)."""
    reply: Any = await client.eval(NTH_NEWEST, 1, stream, n)
    return None if reply is None else _text(reply)


async def newest_before(client: RedisClient, stream: str, bound: str) -> StreamEntry | None:
    """The newest entry below ``bound`` (what a trim to ``bound`` would remove last)."""
    reply: Any = await raw_command(client, "XREVRANGE", stream, f"({bound}", "-", "COUNT", 1)
    if not reply:
        return None
    sid, flat = reply[0]
    return _text(sid), list(zip(flat[::2], flat[1::2], strict=True))
