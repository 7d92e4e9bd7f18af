"""A real Airflow 3 on this machine: API server, scheduler (LocalExecutor) and DAG processor.

For what only a scheduler does — backfill, schedule, task processes of their own — tests start
the three components in a private AIRFLOW_HOME, drive them with the ``airflow`` command like an
operator would, and stop them at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

AIRFLOW = str(Path(sys.executable).with_name("airflow"))
REPO = Path(__file__).parents[2]


@dataclass
class Cluster:
    """The running components and the environment every ``airflow`` command needs."""

    env: dict[str, str]
    home: Path
    pids: dict[str, int] = field(default_factory=dict)  # component name -> its process id

    @property
    def url(self) -> str:
        """The UI and REST API."""
        return f"http://127.0.0.1:{self.env['AIRFLOW__API__PORT']}"

    def airflow(self, *command: str, timeout: float = 120) -> str:
        """Run an ``airflow`` command against this cluster and return its output."""
        for _attempt in range(3):
            result = subprocess.run(
                [AIRFLOW, *command], env=self.env, capture_output=True, text=True, timeout=timeout, check=False
            )
            # SQLite lets one writer in at a time: a command that meets the scheduler's write retries.
            if not (result.returncode and "database is locked" in result.stderr):
                break
            time.sleep(2)
        if result.returncode:
            raise AssertionError(f"airflow {' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def dag_runs(self, dag_id: str) -> list[dict]:
        """Runs of a DAG as the CLI reports them."""
        output = self.airflow("dags", "list-runs", dag_id, "--output", "json")
        # Log lines (warnings) may come before the JSON document on stdout.
        lines = [line for line in output.splitlines() if line.startswith("[")]
        return json.loads(lines[-1]) if lines else []

    def wait(self, condition, timeout: float, what: str, describe=None):
        """Poll ``condition()`` until it returns something truthy."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = condition()
            if value:
                return value
            time.sleep(2)
        logs = "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(self.home.glob("*.out")))
        state = describe() if describe else ""
        raise AssertionError(f"timed out waiting for {what}\n{state}\n{logs}")


#: What a site's tasks need from the test's environment (set by the ``site`` fixture).
SITE_VARIABLES = (
    "S3_MOUNT",
    "LOG_DIR",
    "AIRFLOW_CONN_UPLOAD_DB",
    "CHATWORK_API_KEY",
    "CHATWORK_ROOM_ID",
    "CHATWORK_API_URL",
)


def site_environment() -> dict[str, str]:
    """The site's variables, to hand to a cluster's components."""
    return {name: os.environ[name] for name in SITE_VARIABLES}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _processes(
    commands: list[tuple[str, list[str], dict[str, str]]], home: Path, pids: dict[str, int] | None = None
) -> Iterator[None]:
    """Start ``(name, argv, env)`` each in its own session, output in ``home/<name>.out``; stop them after.

    ``pids``, when given, receives each started process's id under its name.
    """
    processes = []
    try:
        for name, argv, env in commands:
            out = (home / f"{name}.out").open("w")
            processes.append(
                subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
            )
            if pids is not None:
                pids[name] = processes[-1].pid
        yield
    finally:
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)


@contextlib.contextmanager
def celery_running(
    home: Path, extra_env: dict[str, str], metadata_db: str, *, workers: int = 2, concurrency: int = 4
) -> Iterator[Cluster]:
    """API server, scheduler and DAG processor with CeleryExecutor, a real Redis, and ``workers``
    Celery workers, each with its own AIRFLOW_HOME and temp folder: they share nothing but the
    photo storage and LOG_DIR given in ``extra_env`` (and the code). ``metadata_db`` is an
    SQLAlchemy URL of an empty PostgreSQL database.
    """
    redis_port = _free_port()
    slots = workers * concurrency
    celery = {
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_db,
        "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:{redis_port}/0",
        "AIRFLOW__CELERY__RESULT_BACKEND": f"redis://127.0.0.1:{redis_port}/1",
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(concurrency),
        "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": str(slots),
    }
    home.mkdir(parents=True, exist_ok=True)
    redis = [
        "redis-server", "--bind", "127.0.0.1", "--port", str(redis_port), "--save", "", "--appendonly", "no",
        "--dir", str(home),
    ]  # fmt: skip
    with (
        _processes([("redis", redis, dict(os.environ))], home),
        running(home, {**extra_env, **celery}, slots) as cluster,
    ):
        commands = []
        for n in range(1, workers + 1):
            worker_home = home / f"worker{n}"
            (worker_home / "tmp").mkdir(parents=True, exist_ok=True)
            env = {
                **cluster.env,
                "AIRFLOW_HOME": str(worker_home),
                "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(worker_home / "logs"),
                "TMPDIR": str(worker_home / "tmp"),
            }
            argv = [AIRFLOW, "celery", "worker", "--celery-hostname", f"worker{n}@%h", "--skip-serve-logs"]
            commands.append((f"worker{n}", argv, env))
        with _processes(commands, home):
            yield cluster


@contextlib.contextmanager
def running(home: Path, extra_env: dict[str, str], slots: int = 2, port: int | None = None) -> Iterator[Cluster]:
    """Start an API server, a scheduler and a DAG processor on ``home`` (SQLite, LocalExecutor).

    ``slots`` is both the executor's parallelism and ``PLATEMASK_CAR_TASKS``. Nothing else is
    set up in Airflow (no pool): what a fresh ``airflow standalone`` has.
    """
    port = port or _free_port()
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        # As in production: dates typed in the CLI and the UI are site days.
        "AIRFLOW__CORE__DEFAULT_TIMEZONE": "Asia/Tokyo",
        "AIRFLOW__CORE__PARALLELISM": str(slots),
        "PLATEMASK_CAR_TASKS": str(slots),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API_AUTH__JWT_SECRET": "platemask-test-jwt-secret-0123456789abcdef",
        "AIRFLOW__API__SECRET_KEY": "platemask-test-api-secret",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
        "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "600",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        # As docker-compose.yaml: a task's supervisor notices the process exit within 1 s, not 5.
        "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        **extra_env,
    }
    home.mkdir(parents=True, exist_ok=True)
    cluster = Cluster(env, home)
    cluster.airflow("db", "migrate", timeout=300)
    # Everything on 127.0.0.1: the API server is bound there, and the scheduler's log server
    # (all interfaces, no setting for it) is not needed, as LocalExecutor's logs are local files.
    commands = [
        ("api-server", [AIRFLOW, "api-server", "--port", str(port)], env),
        ("scheduler", [AIRFLOW, "scheduler", "--skip-serve-logs"], env),
        ("dag-processor", [AIRFLOW, "dag-processor"], env),
    ]
    with _processes(commands, home, cluster.pids):
        yield cluster
