"""Real parts for end-to-end tests: Airflow's metadata DB, PostgreSQL, a Chatwork double."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.chatwork import FakeChatwork
from tests.support.site import Site, new_site


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """``airflow db migrate`` on SQLite in the session's temporary AIRFLOW_HOME."""
    airflow = Path(sys.executable).with_name("airflow")
    subprocess.run([str(airflow), "db", "migrate"], check=True, env=os.environ, capture_output=True)


@pytest.fixture
def chatwork() -> Iterator[FakeChatwork]:
    """A local Chatwork API double; nothing leaves 127.0.0.1."""
    with FakeChatwork(token="e2e-token") as fake:
        yield fake


@pytest.fixture
def site(airflow_db: None, postgres, chatwork: FakeChatwork, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Site:
    """A fresh site database with ``upload_files``, a photo root and the variables pointing at them."""
    site = new_site(postgres, tmp_path / "mount")
    monkeypatch.setenv("S3_MOUNT", str(site.root))
    monkeypatch.setenv("LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.setenv("AIRFLOW_CONN_UPLOAD_DB", site.connection_json())
    monkeypatch.setenv("CHATWORK_API_KEY", "e2e-token")
    monkeypatch.setenv("CHATWORK_ROOM_ID", "424242")
    monkeypatch.setenv("CHATWORK_API_URL", chatwork.url)
    return site
