"""``platemask check`` (platemask.preflight): each check against the real thing it checks.

The site database is a real PostgreSQL (pgserver), Chatwork the local double, the photo root a
folder (a read-only tmpfs for the unwritable case); S3 and public backups are in tests/s3/.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from platemask.cli import main
from platemask.preflight import (
    Check,
    Preflight,
    Status,
    check_chatwork,
    check_database,
    check_photo_root,
    passed,
    run_checks,
)
from tests.fakes.chatwork import FakeChatwork
from tests.support.site import Site, new_site
from tests.support.tmpfs import mounted

UPLOADS_SQL = Path(__file__).parents[2] / "include" / "sql" / "day_uploads.sql"


@pytest.fixture
def site(postgres, tmp_path: Path) -> Site:
    return new_site(postgres, tmp_path / "mount")


@pytest.fixture
def environment(site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeChatwork]:
    """Every variable of a sound deployment: a photo folder, LOG_DIR, the site database, Chatwork."""
    with FakeChatwork(token="check-token") as chatwork:
        for name, value in {
            "S3_MOUNT": str(site.root),
            "LOG_DIR": str(tmp_path / "logs"),
            "AIRFLOW_CONN_UPLOAD_DB": site.connection_json(),
            "CHATWORK_API_KEY": "check-token",
            "CHATWORK_ROOM_ID": "4242",
            "CHATWORK_API_URL": chatwork.url,
        }.items():
            monkeypatch.setenv(name, value)
        yield chatwork


def _lines(output: str) -> dict[str, str]:
    """Check name -> its line, from the command's output."""
    lines = {}
    for line in output.splitlines():
        status, _, rest = line.partition("  ")
        if status.strip() in {"OK", "FAIL", "SKIP"}:
            lines[rest.strip().split("  ")[0].removesuffix(" (optional)")] = line
    return lines


def _one(preflight: Preflight, check) -> tuple[Status, str, str]:
    [outcome] = run_checks(preflight, [Check(check.__name__, check)])
    return outcome.result.status, outcome.result.message, outcome.result.fix


@pytest.mark.inference
def test_a_sound_deployment_passes_every_check_and_touches_no_photo(
    environment: FakeChatwork, site: Site, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photo = site.root / "upfile" / "1041" / "8430" / "10418430001.jpg"
    photo.parent.mkdir(parents=True)
    photo.write_bytes(b"a photo")

    assert main(["check"]) == 0

    lines = _lines(capsys.readouterr().out)
    assert set(lines) == {
        "settings",
        "plate model",
        "photo root",
        "site database",
        "chatwork",
        "LOG_DIR",
        "backups not public",
    }
    # Backups in a local folder cannot be checked from here: the web server must deny them.
    backups = lines.pop("backups not public")
    assert backups.startswith("SKIP")
    assert "must deny /.backup/" in backups
    assert all(line.startswith("OK ") for line in lines.values()), lines
    assert "a local path" in lines["LOG_DIR"]
    assert "room 4242" in lines["chatwork"]
    # The probes are gone, the photo is as it was, and nothing was posted to Chatwork.
    assert sorted(p.relative_to(site.root) for p in site.root.rglob("*") if p.is_file()) == [
        photo.relative_to(site.root)
    ]
    assert photo.read_bytes() == b"a photo"
    assert list((tmp_path / "logs" / "tracking").iterdir()) == []
    assert environment.messages == []


@pytest.mark.parametrize(
    ("variable", "value", "skipped"),
    [
        pytest.param("PLATEMASK_CONF", "2", "plate model", id="out-of-range"),
        pytest.param("PLATEMASK_MASK_STYLE", "paint", "site database", id="unknown-style"),
        # Without a photo root the model can still be checked (and is).
        pytest.param("S3_MOUNT", "", "photo root", id="no-photo-root", marks=pytest.mark.inference),
    ],
)
def test_invalid_settings_fail_naming_the_variable_and_exit_1(
    environment: FakeChatwork, variable: str, value: str, skipped: str, monkeypatch, capsys
) -> None:
    monkeypatch.setenv(variable, value)

    assert main(["check"]) == 1

    output = capsys.readouterr().out
    lines = _lines(output)
    assert lines["settings"].startswith("FAIL")
    assert variable in lines["settings"]
    assert "fix:" in lines["settings"]
    # The checks that need the settings say so instead of failing on the same cause again.
    assert lines[skipped].startswith("SKIP")
    assert "NOT ready" in output


@pytest.fixture
def read_only_root(tmp_path: Path) -> Iterator[Path]:
    """A read-only file system as the photo root (a tmpfs mounted ro; needs root)."""
    with mounted(tmp_path / "ro", "ro,size=1m") as root:
        yield root


def test_an_unwritable_photo_root_fails_with_the_reason(read_only_root: Path, tmp_path: Path) -> None:
    preflight = Preflight({"S3_MOUNT": str(read_only_root), "LOG_DIR": str(tmp_path / "logs")})

    status, message, fix = _one(preflight, check_photo_root)

    assert status is Status.FAIL
    assert "Read-only file system" in message
    assert "S3_MOUNT" in fix


def test_a_photo_root_that_is_not_there_fails_and_is_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "not-mounted"
    preflight = Preflight({"S3_MOUNT": str(missing), "LOG_DIR": str(tmp_path / "logs")})

    status, message, _ = _one(preflight, check_photo_root)

    assert status is Status.FAIL
    assert str(missing) in message
    assert not missing.exists()


def _query_check(site: Site, tmp_path: Path, sql: str | None = None, **environ: str) -> tuple[Status, str, str]:
    sql_file = UPLOADS_SQL
    if sql is not None:
        sql_file = tmp_path / "day_uploads.sql"
        sql_file.write_text(sql, encoding="utf-8")
    environ = {"S3_MOUNT": str(site.root), "AIRFLOW_CONN_UPLOAD_DB": site.dsn, **environ}
    return _one(Preflight(environ, sql_file=sql_file), check_database)


def test_the_shipped_query_returns_every_column_through_a_uri(site: Site, tmp_path: Path) -> None:
    status, message, _ = _query_check(site, tmp_path)
    assert status is Status.OK
    assert "file_id, car_id, file_path, branch_no, updated_at" in message


def test_airflow_json_connections_work_without_airflow(site: Site, tmp_path: Path) -> None:
    status, _, _ = _query_check(site, tmp_path, AIRFLOW_CONN_UPLOAD_DB=site.connection_json())
    assert status is Status.OK


def test_a_query_missing_a_column_fails_naming_it(site: Site, tmp_path: Path) -> None:
    sql = UPLOADS_SQL.read_text(encoding="utf-8").replace("    branch_no,\n", "")
    assert "\n    branch_no,\n" not in sql

    status, message, fix = _query_check(site, tmp_path, sql)

    assert status is Status.FAIL
    assert "no column branch_no" in message
    assert "AS file_id, car_id, file_path, branch_no, updated_at" in fix


def test_a_query_the_database_refuses_fails_with_its_error(site: Site, tmp_path: Path) -> None:
    sql = UPLOADS_SQL.read_text(encoding="utf-8").replace("FROM upload_files", "FROM site_uploads")

    status, message, _ = _query_check(site, tmp_path, sql)

    assert status is Status.FAIL
    assert "site_uploads" in message


def test_an_unreachable_database_fails(site: Site, tmp_path: Path) -> None:
    status, message, fix = _query_check(
        site, tmp_path, AIRFLOW_CONN_UPLOAD_DB="postgresql://nobody@127.0.0.1:1/site?connect_timeout=2"
    )
    assert status is Status.FAIL
    assert "cannot connect to the site database" in message
    assert "AIRFLOW_CONN_UPLOAD_DB" in fix


def _chatwork_check(chatwork: FakeChatwork, tmp_path: Path, **environ: str):
    base = {"S3_MOUNT": str(tmp_path), "CHATWORK_API_URL": chatwork.url, "CHATWORK_ROOM_ID": "4242"}
    [outcome] = run_checks(Preflight({**base, **environ}), [Check("chatwork", check_chatwork, required=False)])
    return outcome


def test_chatwork_is_skipped_when_not_configured(tmp_path: Path) -> None:
    assert _one(Preflight({"S3_MOUNT": str(tmp_path)}), check_chatwork)[0] is Status.SKIP


def test_chatwork_with_the_right_token_is_ok_and_posts_nothing(tmp_path: Path) -> None:
    with FakeChatwork(token="right") as chatwork:
        outcome = _chatwork_check(chatwork, tmp_path, CHATWORK_API_KEY="right")
        assert outcome.result.status is Status.OK
        assert chatwork.messages == []


@pytest.mark.parametrize(
    ("token", "role", "expected"),
    [
        pytest.param("wrong", "member", "Invalid API token", id="wrong-token"),
        pytest.param("right", "readonly", "may only read room 4242", id="read-only-member"),
    ],
)
def test_chatwork_that_cannot_take_the_summary_fails_but_is_optional(tmp_path: Path, token, role, expected) -> None:
    with FakeChatwork(token="right", role=role) as chatwork:
        outcome = _chatwork_check(chatwork, tmp_path, CHATWORK_API_KEY=token)
    assert outcome.result.status is Status.FAIL
    assert expected in outcome.result.message
    assert token == "right" or token not in outcome.result.message
    assert passed([outcome])


def test_chatwork_half_configured_fails_naming_the_missing_variable(tmp_path: Path) -> None:
    status, message, _ = _one(Preflight({"S3_MOUNT": str(tmp_path), "CHATWORK_API_KEY": "t"}), check_chatwork)
    assert status is Status.FAIL
    assert "CHATWORK_ROOM_ID" in message
