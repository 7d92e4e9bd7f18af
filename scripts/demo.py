"""``make demo``: one day of uploads through ``plate_masking_daily``, on real parts, locally.

Starts an embedded PostgreSQL (pgserver), creates ``upload_files`` with a day of uploads (cars
with and without a first photo, a NULL branch_no, a soft-deleted row, a corrupt file), writes
generated photos — or yours, with ``--photos DIR`` — under a local S3_MOUNT, runs
``airflow dags test plate_masking_daily DAY`` on a throwaway SQLite Airflow, then prints where
everything is, the Chatwork summary (captured by a local stand-in), figures, and writes a
before/after contact sheet.

``--seed-only --db-url URL --photos-root DIR`` only seeds a database and a photo folder (the
docker-compose ``demo`` profile uses it).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "include"), str(REPO / "plugins"), str(REPO)]

from platemask.paths import car_folder  # noqa: E402
from tests.support.synthetic import (  # noqa: E402
    SyntheticPhoto,
    make_car_photo,
    make_far_car_photo,
    make_scene,
    photo_jpeg,
)

TABLE = (REPO / "include" / "sql" / "upload_files.sql").read_text(encoding="utf-8")

# (car_cd, inspresultdata_cd, [(branch_no, kind)]); kinds: car / scene / phone (4000×3000, EXIF
# rotated) / far (a car far away, its plate too small for the model: a photo to check, fixed by
# hand in the Airflow UI) / corrupt (a truncated upload) / deleted (soft-deleted row).
CARS = [
    (10418430, None, [(1, "car"), (2, "car"), (3, "car"), (4, "scene"), (5, "car"), (6, "car")]),
    (10418457, None, [(2, "car"), (3, "car"), (4, "scene"), (5, "car"), (6, "far")]),  # no branch_no = 1
    (10418461, None, [(1, "car"), (None, "car"), (3, "car"), (4, "car"), (5, "deleted")]),
    (10418475, None, [(1, "car"), (2, "car"), (3, "corrupt"), (4, "car")]),
    (10418490, "20260001", [(1, "phone"), (2, "car"), (3, "phone"), (4, "car")]),
]


def main() -> int:
    args = _arguments()
    if args.seed_only:
        count = seed(args.db_url, args.photos_root, args.date, args.photos)
        print(f"Seeded {count} uploads for {args.date} into {args.photos_root}")
        return 0
    return run_demo(args)


def _arguments() -> argparse.Namespace:
    tz = ZoneInfo(os.environ.get("PLATEMASK_TIMEZONE", "Asia/Tokyo"))
    yesterday = (dt.datetime.now(tz) - dt.timedelta(days=1)).date()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=Path, help="use your own JPEGs from this folder instead of generated ones")
    parser.add_argument(
        "--date", type=dt.date.fromisoformat, default=yesterday, help="the upload day (default: yesterday)"
    )
    parser.add_argument("--out", type=Path, default=REPO / "demo-output", help="where everything goes")
    parser.add_argument("--seed-only", action="store_true", help="only create the table, rows and photos")
    parser.add_argument("--db-url", help="site database for --seed-only (postgresql://...)")
    parser.add_argument("--photos-root", type=Path, help="photo root (S3_MOUNT) for --seed-only")
    args = parser.parse_args()
    if args.seed_only and not (args.db_url and args.photos_root):
        parser.error("--seed-only needs --db-url and --photos-root")
    return args


def seed(db_url: str, root: Path, day: dt.date, photos: Path | None = None) -> int:
    """Create ``upload_files`` and the day's rows and photos; a day already seeded is left alone."""
    import psycopg

    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(TABLE)
        start = dt.datetime.combine(day, dt.time())
        (existing,) = conn.execute(
            "SELECT count(*) FROM upload_files WHERE created_at >= %s AND created_at < %s",
            (start, start + dt.timedelta(days=1)),
        ).fetchone()
        if existing:
            return existing
        own = sorted(p for p in photos.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg")) if photos else []
        rows = 0
        for index, (car_cd, insp, files) in enumerate(CARS):
            car_id = insp or str(car_cd)
            folder = root / car_folder(car_id).strip("/")
            folder.mkdir(parents=True, exist_ok=True)
            for number, (branch, kind) in enumerate(files, start=1):
                name = f"{car_id}{number:03d}.jpg"
                data = own.pop(0).read_bytes() if own and kind != "corrupt" else _photo(kind, seed=index * 10 + number)
                if kind == "corrupt":
                    data = data[: len(data) // 3]
                (folder / name).write_bytes(data)
                created = start + dt.timedelta(hours=9, minutes=rows)
                conn.execute(
                    "INSERT INTO upload_files (car_cd, inspresultdata_cd, branch_no, file_path, created_at,"
                    " updated_at, deleted_at) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                    (
                        car_cd,
                        insp,
                        branch,
                        f"{car_folder(car_id)}{name}",
                        created,
                        created,
                        created if kind == "deleted" else None,
                    ),
                )
                rows += 1
        return rows


#: The far car: a seed and size whose 22-pixel plate the built-in model misses; the second look
#: lists it as plate-like text left visible (``second_look_unmasked``).
FAR_SEED, FAR_SCALE = 507, 0.2
FAR_PHOTO = "/upfile/1041/8457/10418457005.jpg"


def far_car_photo() -> SyntheticPhoto:
    """The demo day's far car, and where its plate is."""
    return make_far_car_photo(FAR_SEED, size=(1280, 960), scale=FAR_SCALE)


def _photo(kind: str, seed: int) -> bytes:
    if kind == "far":
        return photo_jpeg(far_car_photo().image, quality=90)
    if kind == "scene":
        return photo_jpeg(make_scene(seed, size=(1280, 960)), quality=90)
    if kind == "phone":  # a phone photo: big, stored sideways with an EXIF Orientation tag
        return photo_jpeg(make_car_photo(seed, size=(4000, 3000)).image, quality=90, exif_orientation=6)
    return photo_jpeg(make_car_photo(seed, size=(1280, 960)).image, quality=90)


def run_demo(args: argparse.Namespace) -> int:
    import pgserver

    from tests.fakes.chatwork import FakeChatwork

    out = args.out.resolve()
    root, logs, home = out / "photos", out / "logs", out / "airflow"
    if root.exists():
        import shutil

        shutil.rmtree(root)
        shutil.rmtree(logs, ignore_errors=True)
    for folder in (root, logs, home):
        folder.mkdir(parents=True, exist_ok=True)
    print(f"Demo day {args.date}: seeding an embedded PostgreSQL and {root} …")
    server = pgserver.get_server(out / "pgdata", cleanup_mode="stop")
    server.psql("DROP TABLE IF EXISTS upload_files;")
    rows = seed(server.get_uri(), root, args.date, args.photos)
    before = {p: p.read_bytes() for p in root.rglob("*.jpg")}
    socket_dir = server.get_uri().split("host=", 1)[1]
    with FakeChatwork(token="demo-token") as chatwork:
        env = _airflow_env(home, root, logs, socket_dir, chatwork.url)
        _airflow(env, "db", "migrate")
        print(f"Running: airflow dags test plate_masking_daily {args.date}  (log: {out / 'dags-test.log'})")
        started = time.perf_counter()
        with (out / "dags-test.log").open("w") as log:
            run = subprocess.run(
                [_bin("airflow"), "dags", "test", "plate_masking_daily", args.date.isoformat()],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                check=False,  # a red run is part of the demo (the corrupt upload)
            )
        seconds = time.perf_counter() - started
        messages = [m["body"] for m in chatwork.messages]
    tracking = logs / "tracking" / f"processed_{args.date:%Y%m%d}.json"
    doc = json.loads(tracking.read_text(encoding="utf-8"))
    sheet = contact_sheet(root, doc, before, out / "contact_sheet.png")
    _report(rows, doc, seconds, messages, root, tracking, sheet, run.returncode)
    return 0


def _airflow_env(home: Path, root: Path, logs: Path, socket_dir: str, chatwork_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(REPO / "dags"),
        AIRFLOW__CORE__PLUGINS_FOLDER=str(REPO / "plugins"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home / 'airflow.db'}",
        AIRFLOW_CONN_UPLOAD_DB=json.dumps(
            {"conn_type": "postgres", "host": socket_dir, "login": "postgres", "schema": "postgres"}
        ),
        S3_MOUNT=str(root),
        LOG_DIR=str(logs),
        CHATWORK_API_KEY="demo-token",
        CHATWORK_ROOM_ID="1",
        CHATWORK_API_URL=chatwork_url,
        YOLO_AUTOINSTALL="False",
        YOLO_OFFLINE="True",
        YOLO_CONFIG_DIR=str(home / "ultralytics"),
    )
    return env


def _bin(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def _airflow(env: dict[str, str], *command: str) -> None:
    subprocess.run([_bin("airflow"), *command], env=env, check=True, capture_output=True)


def contact_sheet(root: Path, doc: dict, before: dict[Path, bytes], target: Path) -> Path:
    """Rows of thumbnails: original | .detect/ (masked + banner) | website version of first photos."""
    width = 360
    rows = []
    for record in sorted(doc["processed"].values(), key=lambda r: (r["car_id"], r["path"])):
        original = root / record["path"].lstrip("/")
        cells = [_thumb(before.get(original), width)]
        outputs = record.get("output_paths", {})
        cells.append(_thumb(_read(root, outputs.get("detect")), width))
        cells.append(_thumb(_read(root, outputs.get("original")), width))
        label = f"{record['car_id']} {original.name} branch={record['branch_no']} {record['status']}"
        if record["status"] == "error":
            label += f": {record.get('error', '')[:60]}"
        else:
            label += f", {record.get('detections', 0)} plate(s)"
        row = np.hstack(cells)
        banner = np.full((28, row.shape[1], 3), 255, np.uint8)
        cv2.putText(banner, label, (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (30, 30, 30), 1, cv2.LINE_AA)
        rows.append(np.vstack([banner, row]))
    header = np.full((40, width * 3, 3), 40, np.uint8)
    for i, title in enumerate(
        ("original (.backup/)", ".detect/ (masked + banner)", "website (first photo: banner only)")
    ):
        cv2.putText(header, title, (i * width + 8, 26), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 1, cv2.LINE_AA)
    cv2.imwrite(str(target), np.vstack([header, *rows]))
    return target


def _read(root: Path, path: str | None) -> bytes | None:
    if not path:
        return None
    file = root / path.lstrip("/")
    return file.read_bytes() if file.exists() else None


def _thumb(data: bytes | None, width: int) -> np.ndarray:
    height = width * 3 // 4
    cell = np.full((height, width, 3), 235, np.uint8)
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    if image is None:
        text = "—" if data is None else "(not decodable)"
        cv2.putText(cell, text, (12, height // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (120, 120, 120), 1, cv2.LINE_AA)
        return cell
    scale = min(width / image.shape[1], height / image.shape[0])
    small = cv2.resize(image, (int(image.shape[1] * scale), int(image.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    y, x = (height - small.shape[0]) // 2, (width - small.shape[1]) // 2
    cell[y : y + small.shape[0], x : x + small.shape[1]] = small
    return cell


def _report(rows, doc, seconds, messages, root, tracking, sheet, returncode) -> None:
    records = list(doc["processed"].values())
    done = [r for r in records if r["status"] in ("done", "verified")]
    errors = [r for r in records if r["status"] == "error"]
    plates = sum(r.get("detections", 0) for r in done)
    per_photo = [r["duration_ms"] for r in done if "duration_ms" in r]
    print()
    print(f"Uploads in the database: {rows} (one soft-deleted: never processed)")
    print(f"Photos processed: {len(done)} verified, {len(errors)} error(s); plates found: {plates}")
    for record in errors:
        print(f"  error {record['path']}: {record['error']}")
    if per_photo:
        print(
            f"Time: {seconds:.1f} s for the whole DAG run (Airflow start and model load included); "
            f"{np.median(per_photo) / 1000:.2f} s of work per photo (median; stages overlap), "
            f"{len(done) / seconds:.2f} photos/s"
        )
    print(f"Photos and outputs: {root}  (.backup/ and .detect/ next to each car's photos)")
    print(f"Tracking file:      {tracking}")
    to_check = sum(bool(r.get("review")) for r in done)
    page = Path(tracking).parents[1] / "review" / f"review_{doc['date'].replace('-', '')}.html"
    print(f"Photos to check:    {to_check}, on {page}" if page.is_file() else "Photos to check:    no page written")
    print(f"Contact sheet:      {sheet}")
    print("Summary sent to Chatwork (captured locally):" if messages else "No Chatwork summary was sent.")
    for body in messages:
        print(body)
    if returncode:
        print("The DAG run ended failed (red), as it should with a corrupt upload in the day.")


if __name__ == "__main__":
    sys.exit(main())
