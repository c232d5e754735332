"""What a benchmark's processes cost: their own CPU seconds and peak memory, and the CPU
seconds of the PostgreSQL backends that served them.

CPU seconds per event hardly move when the machine is shared, where events per second
drift by a third; so ``tally bench`` reports both.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
from pathlib import Path
from types import TracebackType
from typing import Self

import asyncpg

SAMPLE_S = 0.05
_TICKS = os.sysconf("SC_CLK_TCK")


class ProcessCpu:
    """CPU seconds (user + system) of this process and of its children that ended (the
    consumer's rating worker), since this was made."""

    def __init__(self) -> None:
        self._start = _cpu(resource.RUSAGE_SELF), _cpu(resource.RUSAGE_CHILDREN)

    def seconds(self) -> float:
        return self.own_seconds() + self.children_seconds()

    def own_seconds(self) -> float:
        return _cpu(resource.RUSAGE_SELF) - self._start[0]

    def children_seconds(self) -> float:
        return _cpu(resource.RUSAGE_CHILDREN) - self._start[1]


def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def children_peak_rss_mb() -> float:
    """The largest peak resident set of this process's children that ended, in MB."""
    return round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)


def pid_cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) another process of this machine has spent so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


class BackendCpu:
    """CPU seconds the PostgreSQL backends of one database spend while this is open.

    The backends are found in ``pg_stat_activity`` every ``SAMPLE_S`` and their CPU read
    from ``/proc/<pid>/stat``, which works when PostgreSQL runs on this machine in the same
    process namespace: a pid is counted only if its command line names the database (so a
    server in a container, whose pids mean other processes here, is never misread).
    ``seconds`` is None when no backend could be read. A backend that ends between two
    samples loses at most its last ``SAMPLE_S`` of CPU.
    """

    def __init__(self, dsn: str, database: str) -> None:
        self.dsn = dsn
        self.database = database
        self._before: dict[int, int] = {}  # ticks of backends alive at the start
        self._latest: dict[int, int] = {}
        self._task: asyncio.Task[None] | None = None
        self._conn: asyncpg.Connection | None = None

    async def __aenter__(self) -> Self:
        self._conn = await asyncpg.connect(self.dsn)
        self._before = await self._sample()
        self._latest = dict(self._before)
        self._task = asyncio.create_task(self._watch())
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._task is not None and self._conn is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        with contextlib.suppress(Exception):
            self._latest.update(await self._sample())
        await self._conn.close()

    @property
    def seconds(self) -> float | None:
        if not self._latest:
            return None
        ticks = sum(now - self._before.get(pid, 0) for pid, now in self._latest.items())
        return round(ticks / _TICKS, 3)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(SAMPLE_S)
            self._latest.update(await self._sample())

    async def _sample(self) -> dict[int, int]:
        assert self._conn is not None
        pids = await self._conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            self.database,
        )
        ticks = {}
        for row in pids:
            if (used := _backend_ticks(row["pid"], self.database)) is not None:
                ticks[row["pid"]] = used
        return ticks


def _backend_ticks(pid: int, database: str) -> int | None:
    """user + system clock ticks of a local backend of ``database``; None if it is not one."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    if b"postgres" not in command or database.encode() not in command:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
