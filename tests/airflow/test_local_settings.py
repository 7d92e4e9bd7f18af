"""plugins/airflow_local_settings.py as Airflow imports it: in a fresh process, from the plugins folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

PLUGINS = Path(__file__).parents[2] / "plugins"
PROBE = (
    "import airflow; from airflow.configuration import conf; "
    "from airflow.executors.base_executor import get_execution_api_server_url; "
    "print(get_execution_api_server_url(), conf.get('api', 'base_url', fallback=None))"
)


def _probe(tmp_path: Path, **env: str) -> list[str]:
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__API__", "AIRFLOW__CORE__EXECUTION_API"))
    }
    clean.update(AIRFLOW_HOME=str(tmp_path), AIRFLOW__CORE__PLUGINS_FOLDER=str(PLUGINS), **env)
    result = subprocess.run([sys.executable, "-c", PROBE], env=clean, capture_output=True, text=True, check=True)
    return result.stdout.split()[-2:]


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        pytest.param(
            {"AIRFLOW__API__PORT": "8123"},
            ["http://localhost:8123/execution/", "http://localhost:8123"],
            id="port-only",
        ),
        pytest.param(
            {"AIRFLOW__API__PORT": "8123", "AIRFLOW__API__HOST": "127.0.0.1"},
            ["http://127.0.0.1:8123/execution/", "http://127.0.0.1:8123"],
            id="port-and-host",
        ),
        pytest.param(
            {"AIRFLOW__API__PORT": "8123", "AIRFLOW__API__BASE_URL": "https://airflow.example.jp"},
            ["https://airflow.example.jp/execution/", "https://airflow.example.jp"],
            id="base-url-wins",
        ),
        pytest.param({}, ["http://localhost:8080/execution/", "None"], id="default-port-untouched"),
    ],
)
def test_tasks_reach_the_api_server_on_its_own_port(tmp_path: Path, env: dict[str, str], expected: list[str]) -> None:
    assert _probe(tmp_path, **env) == expected
