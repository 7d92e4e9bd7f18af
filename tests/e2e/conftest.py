"""Real parts for end-to-end tests: Airflow's metadata DB, PostgreSQL, a Chatwork double."""

from __future__ import annotations

import itertools
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.chatwork import FakeChatwork
from tests.support.site import TABLE, Site

_databases = itertools.count()


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """``airflow db migrate`` on SQLite in the session's temporary AIRFLOW_HOME."""
    airflow = Path(sys.executable).with_name("airflow")
    subprocess.run([str(airflow), "db", "migrate"], check=True, env=os.environ, capture_output=True)


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """An embedded PostgreSQL 16 (pgserver), stopped at the end of the session."""
    import pgserver

    pgdata = tmp_path_factory.mktemp("pgdata")
    pgdata.parent.chmod(0o755)  # as root, pgserver runs postgres as its own user, which must reach the folder
    server = pgserver.get_server(pgdata, cleanup_mode="stop")
    yield server
    server.cleanup()
    logging.getLogger("pgserver").disabled = True  # its exit hook logs after pytest closed the streams


@pytest.fixture
def chatwork() -> Iterator[FakeChatwork]:
    """A local Chatwork API double; nothing leaves 127.0.0.1."""
    with FakeChatwork(token="e2e-token") as fake:
        yield fake


@pytest.fixture
def site(airflow_db: None, postgres, chatwork: FakeChatwork, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Site:
    """A fresh site database with ``upload_files``, a photo root and the variables pointing at them."""
    import psycopg

    database = f"site_{next(_databases)}"
    admin_dsn = postgres.get_uri()
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {database}")
    socket_dir = admin_dsn.split("host=", 1)[1]
    site = Site(dsn=postgres.get_uri(database), socket_dir=socket_dir, database=database, root=tmp_path / "mount")
    site.root.mkdir()
    site.execute(TABLE)
    monkeypatch.setenv("S3_MOUNT", str(site.root))
    monkeypatch.setenv("LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.setenv("AIRFLOW_CONN_UPLOAD_DB", site.connection_json())
    monkeypatch.setenv("CHATWORK_API_KEY", "e2e-token")
    monkeypatch.setenv("CHATWORK_ROOM_ID", "424242")
    monkeypatch.setenv("CHATWORK_API_URL", chatwork.url)
    return site
