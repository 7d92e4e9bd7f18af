"""``platemask check``: what an operator runs after an install or an upgrade, before the first day.

Each check tries the real thing the daily run will need, with the settings and connections the
tasks use, and answers OK, FAIL (with the fix) or SKIP. Probes are files named
``platemask-check`` that are written, read back and deleted again; no photo is ever touched.
Nothing here imports Airflow: the command passes in Airflow's connections when Airflow is there.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import secrets
import socket
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from platemask.config import ASSETS, Settings
from platemask.errors import ChatworkError, ConfigError, PlateMaskError
from platemask.notify import ChatworkClient, client_from_settings
from platemask.paths import photo_paths
from platemask.storage import LocalStorage, Storage, open_log_storage, open_storage
from platemask.uploads import QUERY_COLUMNS, run_day_query

__all__ = [
    "CHECKS",
    "DEFAULT_SQL",
    "UPLOAD_DB_CONN_ID",
    "Check",
    "Outcome",
    "Preflight",
    "Result",
    "Status",
    "connection_from_environ",
    "format_outcome",
    "passed",
    "run_checks",
]

#: The site's query as the daily DAG reads it (include/sql/, next to this package in a checkout).
DEFAULT_SQL = Path(__file__).parents[1] / "sql" / "day_uploads.sql"
#: A photo of a synthetic car with one plate, drawn by scripts/make_assets.py.
CHECK_PHOTO = ASSETS / "check_plate.jpg"
UPLOAD_DB_CONN_ID = "upload_db"
PROBE = "platemask-check"


class Status(StrEnum):
    OK = "OK"
    FAIL = "FAIL"
    SKIP = "SKIP"


@dataclass(frozen=True)
class Result:
    """What one check found, and for a failure what to do about it."""

    status: Status
    message: str
    fix: str = ""


def ok(message: str) -> Result:
    return Result(Status.OK, message)


def fail(message: str, fix: str) -> Result:
    return Result(Status.FAIL, message, fix)


def skip(message: str) -> Result:
    return Result(Status.SKIP, message)


@dataclass
class Preflight:
    """What the checks are given: the environment and how to reach the site database, S3 and Chatwork.

    ``connect_db`` opens a DB-API connection to the site database (default: from
    ``AIRFLOW_CONN_UPLOAD_DB``); ``s3_client`` and ``chatwork`` build clients from the settings.
    """

    environ: Mapping[str, str]
    connect_db: Callable[[], Any] | None = None
    s3_client: Callable[[Settings], Any] | None = None
    chatwork: Callable[[Settings], ChatworkClient | None] = client_from_settings
    sql_file: Path = DEFAULT_SQL
    #: One name for every probe of this run, so two operators' checks never meet.
    probe_id: str = field(default_factory=lambda: f"{socket.gethostname()}-{secrets.token_hex(4)}")

    @functools.cached_property
    def settings(self) -> Settings:
        """The settings; a :class:`ConfigError` (naming the variable) when they are invalid."""
        return Settings.from_env(self.environ)

    @functools.cached_property
    def storages(self) -> tuple[Storage, Storage]:
        """The photo storage and the backup storage, as the tasks open them."""
        return open_storage(self.settings, self._s3_client_factory())

    def log_storage(self) -> Storage:
        return open_log_storage(self.settings, self._s3_client_factory())

    def _s3_client_factory(self) -> Callable[[], Any] | None:
        if self.s3_client is None:
            return None
        make, settings = self.s3_client, self.settings
        return lambda: make(settings)

    def connect(self) -> Any:
        return self.connect_db() if self.connect_db else connection_from_environ(self.environ)


@dataclass(frozen=True)
class Check:
    """One named check; a failed ``required`` check makes ``platemask check`` exit non-zero."""

    name: str
    run: Callable[[Preflight], Result]
    required: bool = True


@dataclass(frozen=True)
class Outcome:
    check: Check
    result: Result


def run_checks(preflight: Preflight, checks: Sequence[Check] | None = None) -> Iterator[Outcome]:
    """Run every check in order, yielding each outcome as it comes; each runs, whatever the others found."""
    for check in checks or CHECKS:
        try:
            result = check.run(preflight)
        except ConfigError:
            # A setting this check needs is invalid: the settings line already says which and how to fix it.
            result = skip("needs valid settings (see the settings line)")
        except Exception as exc:
            # A check must report, never stop the others: an unexpected error is this check's failure.
            result = fail(f"{type(exc).__name__}: {exc}", "see the error; run again with -v for details")
        yield Outcome(check, result)


def passed(outcomes: Sequence[Outcome]) -> bool:
    """Whether no required check failed."""
    return not any(o.check.required and o.result.status is Status.FAIL for o in outcomes)


def format_outcome(outcome: Outcome) -> str:
    """One line: status, check name, what was found, and for a failure the fix."""
    result, check = outcome.result, outcome.check
    name = check.name if check.required else f"{check.name} (optional)"
    line = f"{result.status.value:<4}  {name:<22} {result.message}"
    return f"{line} | fix: {result.fix}" if result.fix else line


# --- the checks ---------------------------------------------------------------------------------


def check_settings(preflight: Preflight) -> Result:
    try:
        settings = preflight.settings
        settings.require_storage()
        ZoneInfo(settings.timezone)
    except ConfigError as exc:
        return fail(
            str(exc), "correct that variable in the environment (.env for Docker); docs/configuration.md lists them all"
        )
    except (ZoneInfoNotFoundError, ValueError):
        return fail(
            f"PLATEMASK_TIMEZONE {settings.timezone!r} is not a time zone", "use an IANA name such as Asia/Tokyo"
        )
    return ok(f"S3_MOUNT {settings.s3_mount}, LOG_DIR {settings.log_dir}, days in {settings.timezone}")


def check_model(preflight: Preflight) -> Result:
    import cv2

    from platemask.detect import get_detector

    detector = get_detector(preflight.settings.detect)
    image = cv2.imread(str(CHECK_PHOTO), cv2.IMREAD_COLOR)
    started = time.perf_counter()
    try:
        found = detector.detect([image])[0]
    except PlateMaskError as exc:
        return fail(str(exc), "unset PLATE_MODEL for the built-in model, or point it at an OpenVINO folder or .onnx")
    elapsed = time.perf_counter() - started
    if not found:
        return fail(
            f"{detector.model_path} found no plate in the built-in test photo at PLATEMASK_CONF "
            f"{detector.options.conf}",
            "check PLATE_MODEL is a plate model and PLATEMASK_CONF is not too high (default 0.35)",
        )
    best = max(d.conf for d in found)
    return ok(f"{detector.model_path} found the test photo's plate (confidence {best:.2f}) in {elapsed:.1f} s")


def check_photo_root(preflight: Preflight) -> Result:
    store, _ = preflight.storages
    if isinstance(store, LocalStorage) and not store.root.is_dir():
        return fail(f"{store.root} is not a folder", "mount the photo bucket there, or set S3_MOUNT to where it is")
    probe = f"/.{PROBE}-{preflight.probe_id}.txt"
    try:
        _round_trip(store, probe)
    except PlateMaskError as exc:
        return fail(
            f"{store.describe('/')}: {exc}",
            "let the user that runs the workers read and write S3_MOUNT (mount options, owner, S3 policy)",
        )
    return ok(f"{store.describe('/')}: wrote, read back and deleted {probe.lstrip('/')}")


def check_database(preflight: Preflight) -> Result:
    path = preflight.sql_file
    if not path.is_file():
        return fail(f"no query file {path}", "pass the site's query with --sql (the DAG reads include/sql/)")
    sql = path.read_text(encoding="utf-8")
    day = (dt.datetime.now(ZoneInfo(preflight.settings.timezone)) - dt.timedelta(days=1)).date()
    try:
        connection = preflight.connect()
    except Exception as exc:  # each driver and Airflow have their own errors: all mean "not reachable"
        return fail(
            f"cannot connect to the site database ({UPLOAD_DB_CONN_ID}): {exc}".strip(),
            "check AIRFLOW_CONN_UPLOAD_DB (host, port, user, password, database) and that this host may connect",
        )
    with closing(connection):
        try:
            columns, rows = _describe_query(connection, sql, day, preflight.settings.timezone)
        except Exception as exc:  # the driver's error names what the database refused
            return fail(f"{path.name} failed for {day}: {exc}".strip(), f"adapt {path} to the site's tables")
    missing = [name for name in QUERY_COLUMNS if name not in columns]
    if missing:
        return fail(
            f"{path.name} returns no column {', '.join(missing)} (it returns {', '.join(columns)})",
            f"name the site's columns with AS {', '.join(QUERY_COLUMNS)} in {path}",
        )
    return ok(f"{path.name} ran for {day}: {rows} rows with {', '.join(QUERY_COLUMNS)}")


def check_chatwork(preflight: Preflight) -> Result:
    settings = preflight.settings
    if bool(settings.chatwork_api_key) != bool(settings.chatwork_room_id):
        unset = "CHATWORK_ROOM_ID" if settings.chatwork_api_key else "CHATWORK_API_KEY"
        return fail(f"{unset} is not set, so no summary is sent", f"set {unset} too, or neither")
    try:
        client = preflight.chatwork(settings)
        if client is None:
            return skip("not configured (CHATWORK_API_KEY, CHATWORK_ROOM_ID): no daily summary is sent")
        room = client.room()
    except ChatworkError as exc:
        return fail(str(exc), "check CHATWORK_API_KEY, CHATWORK_ROOM_ID and CHATWORK_API_URL")
    if room.get("role") == "readonly":
        return fail(
            f"the token's account may only read room {client.room_id}", "make that account a member of the room"
        )
    return ok(f"room {client.room_id} ({room.get('name', '?')}) at {client.api_url}, role {room.get('role', '?')}")


def check_log_dir(preflight: Preflight) -> Result:
    store = preflight.log_storage()
    probe = f"/tracking/.{PROBE}-{preflight.probe_id}.txt"
    try:
        _round_trip(store, probe)
    except PlateMaskError as exc:
        return fail(f"LOG_DIR {store.describe('/')}: {exc}", "let the workers' user write LOG_DIR/tracking")
    if isinstance(store, LocalStorage):
        where = "a local path: the scheduler and every worker must see this same folder (a shared mount)"
    else:
        where = "in S3, shared by every worker"
    return ok(f"{store.describe('/tracking/')} is writable; {where}")


def check_backups_private(preflight: Preflight) -> Result:
    from platemask.s3 import S3Storage

    settings = preflight.settings
    _, backups = preflight.storages
    if not isinstance(backups, S3Storage):
        return skip(
            f"backups are in {settings.backup_dir_name}/ folders under {settings.s3_mount}: "
            f"the web server must deny /{settings.backup_dir_name}/ (docs/operations/storage.md)"
        )
    # Where a real backup would be, so that a policy on the photos' keys applies to it as well.
    probe = photo_paths(f"/upfile/{PROBE}/{preflight.probe_id}.txt", backup_dir=settings.backup_dir_name).backup
    backups.write(probe, b"platemask check: a backup must not be readable without credentials\n")
    try:
        answers = _anonymous_answers(backups, probe)
    finally:
        backups.delete(probe)
    where = backups.describe(probe.rsplit("/", 1)[0]) + "/"
    public = [request for request, answer in answers.items() if answer == "allowed"]
    if public:
        return fail(
            f"anyone may {' and '.join(public)} {where} without credentials: the unmasked originals are public",
            "deny anonymous s3:GetObject and s3:ListBucket on the backups (bucket policy, Block Public Access)",
        )
    unclear = {request: answer for request, answer in answers.items() if answer != "refused"}
    if unclear:
        return fail(
            f"could not tell whether {where} is public: {json.dumps(unclear)}",
            "check the bucket policy by hand: anonymous GET and LIST must be refused (403)",
        )
    return ok(f"{where}: anonymous GET and LIST are refused")


CHECKS: tuple[Check, ...] = (
    Check("settings", check_settings),
    Check("plate model", check_model),
    Check("photo root", check_photo_root),
    Check("site database", check_database),
    Check("chatwork", check_chatwork, required=False),
    Check("LOG_DIR", check_log_dir),
    Check("backups not public", check_backups_private),
)


# --- helpers ------------------------------------------------------------------------------------


def _round_trip(store: Storage, path: str) -> None:
    """Write ``path``, read it back, delete it; a :class:`PlateMaskError` says which step failed."""
    data = f"{PROBE} {dt.datetime.now(dt.UTC).isoformat()}\n".encode()
    store.write(path, data)
    try:
        if store.read(path) != data:
            raise PlateMaskError(f"{store.describe(path)} read back other bytes than were written")
    finally:
        store.delete(path)


def _describe_query(connection: Any, sql: str, day: dt.date, timezone: str) -> tuple[list[str], int]:
    """The column names and row count of the site's query, run as the daily run runs it, in a
    transaction that is rolled back."""
    try:
        with closing(connection.cursor()) as cursor:
            return run_day_query(cursor, sql, day, timezone=timezone), cursor.rowcount
    finally:
        connection.rollback()  # the query only reads; roll back anyway, whatever a site adapted it to


def _anonymous_answers(backups: Any, probe: str) -> dict[str, str]:
    """How S3 answers a GET of ``probe`` and a LIST of its folder without credentials.

    ``allowed``, ``refused`` (401/403) or the error code when the answer says neither.
    """
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config

    signed = backups.client
    anonymous = boto3.client(
        "s3",
        endpoint_url=signed.meta.endpoint_url,
        region_name=signed.meta.region_name,
        config=signed.meta.config.merge(Config(signature_version=UNSIGNED)),
    )
    key = backups.key(probe)
    folder = key.rsplit("/", 1)[0] + "/"
    return {
        "GET": _answer(functools.partial(anonymous.get_object, Bucket=backups.bucket, Key=key)),
        "LIST": _answer(functools.partial(anonymous.list_objects_v2, Bucket=backups.bucket, Prefix=folder, MaxKeys=1)),
    }


def _answer(request: Callable[[], Any]) -> str:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        request()
    except ClientError as exc:
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return "refused" if status in (401, 403) else exc.response.get("Error", {}).get("Code", str(status))
    except BotoCoreError as exc:
        return type(exc).__name__
    return "allowed"


def connection_from_environ(environ: Mapping[str, str]) -> Any:
    """A psycopg2 connection to ``upload_db`` from ``AIRFLOW_CONN_UPLOAD_DB`` (a URI or Airflow's JSON form).

    For hosts without Airflow; with Airflow, ``platemask check`` uses its PostgresHook instead.
    """
    import psycopg2

    variable = f"AIRFLOW_CONN_{UPLOAD_DB_CONN_ID.upper()}"
    value = (environ.get(variable) or "").strip()
    if not value:
        raise ConfigError(f"{variable} is not set")
    if not value.startswith("{"):
        return psycopg2.connect(value)  # libpq reads postgres:// and postgresql:// URIs itself
    fields = json.loads(value)
    options = {
        "host": fields.get("host"),
        "port": fields.get("port"),
        "user": fields.get("login"),
        "password": fields.get("password"),
        "dbname": fields.get("schema"),
    }
    return psycopg2.connect(**{k: v for k, v in options.items() if v not in (None, "")})
