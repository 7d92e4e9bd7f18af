"""A site for end-to-end tests: a real PostgreSQL with ``upload_files`` and a photo folder."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from platemask.paths import car_folder

TABLE = (Path(__file__).parents[2] / "include" / "sql" / "upload_files.sql").read_text(encoding="utf-8")
_databases = itertools.count()
SCHEMA = json.loads((Path(__file__).parents[1] / "schemas" / "tracking.schema.json").read_text(encoding="utf-8"))


def valid_tracking(doc: dict) -> dict:
    """``doc``, after checking it against the original script's schema (tests/schemas)."""
    import jsonschema

    jsonschema.validate(doc, SCHEMA)
    return doc


def tracking_file(day: dt.date) -> dict:
    """The day's tracking file under ``LOG_DIR``, checked against the schema."""
    path = Path(os.environ["LOG_DIR"]) / "tracking" / f"processed_{day:%Y%m%d}.json"
    return valid_tracking(json.loads(path.read_text(encoding="utf-8")))


@dataclass
class Upload:
    """One seeded row and what the test knows about its photo."""

    file_id: int
    car_id: str
    path: str
    branch_no: int | None
    original: bytes
    plate_box: tuple[int, int, int, int] | None = None


@dataclass
class Site:
    """The site database (one PostgreSQL database per test) and its photo root."""

    dsn: str
    socket_dir: str
    database: str
    root: Path
    uploads: list[Upload] = field(default_factory=list)

    def connection_json(self) -> str:
        """``AIRFLOW_CONN_UPLOAD_DB`` in Airflow's JSON form (pgserver listens on a Unix socket)."""
        return json.dumps(
            {"conn_type": "postgres", "host": self.socket_dir, "login": "postgres", "schema": self.database}
        )

    def execute(self, sql: str, params: tuple | dict | None = None) -> list[tuple]:
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True) as conn, conn.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall() if cursor.description else []

    def add(
        self,
        car_cd: int,
        name: str,
        data: bytes,
        *,
        branch_no: int | None,
        day: dt.date,
        inspresultdata_cd: str | None = None,
        deleted: bool = False,
        path: str | None = None,
        plate_box: tuple[int, int, int, int] | None = None,
        at: dt.time | None = None,
    ) -> Upload:
        """Insert a row for ``day`` (at ``at``, else 10:00 site time) and write its photo under the root."""
        car_id = inspresultdata_cd or str(car_cd)
        path = path or f"{car_folder(car_id)}{name}"
        created = dt.datetime.combine(day, at or dt.time(10, len(self.uploads) % 60))
        [(file_id,)] = self.execute(
            "INSERT INTO upload_files (car_cd, inspresultdata_cd, branch_no, file_path, created_at, updated_at,"
            " deleted_at) VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id",
            (car_cd, inspresultdata_cd, branch_no, path, created, created, created if deleted else None),
        )
        target = self.root / path.lstrip("/")
        if ".." not in path:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        upload = Upload(file_id, car_id, path, branch_no, data, plate_box)
        self.uploads.append(upload)
        return upload

    def touch(self, upload: Upload, data: bytes, *, at: dt.datetime | None = None) -> None:
        """Staff replace a photo: new bytes on storage and a newer ``updated_at`` (``at``, else an hour later)."""
        (self.root / upload.path.lstrip("/")).write_bytes(data)
        self.execute(
            "UPDATE upload_files SET updated_at = COALESCE(%s::timestamp, updated_at + interval '1 hour')"
            " WHERE id = %s",
            (at, upload.file_id),
        )
        upload.original = data

    def snapshot(self) -> dict[str, bytes]:
        """Every file under the photo root and its bytes."""
        return {str(p.relative_to(self.root)): p.read_bytes() for p in sorted(self.root.rglob("*")) if p.is_file()}

    def file(self, path: str) -> bytes:
        """Bytes of a storage-relative path."""
        return (self.root / path.lstrip("/")).read_bytes()

    def exists(self, path: str) -> bool:
        """Whether a storage-relative path exists."""
        return (self.root / path.lstrip("/")).exists()

    def pixels(self, path: str) -> np.ndarray:
        """Decoded BGR pixels of a storage-relative path."""
        import cv2

        return cv2.imdecode(np.frombuffer(self.file(path), np.uint8), cv2.IMREAD_COLOR)


def new_site(postgres: Any, root: Path) -> Site:
    """A fresh database with ``upload_files`` on ``postgres`` (a pgserver) and ``root`` as its photo folder."""
    import psycopg

    database = f"site_{next(_databases)}"
    admin_dsn = postgres.get_uri()
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {database}")
    socket_dir = admin_dsn.split("host=", 1)[1]
    site = Site(dsn=postgres.get_uri(database), socket_dir=socket_dir, database=database, root=root)
    site.root.mkdir(parents=True, exist_ok=True)
    site.execute(TABLE)
    return site
