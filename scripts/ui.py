"""``make ui``: a real Airflow on 127.0.0.1 with the demo day loaded, to try the operator's day.

Starts an embedded PostgreSQL as the site database (the demo day — yesterday — and the two days
before it, for backfills), the generated photos under ``ui-output/photos``, a local stand-in for
Chatwork (its messages are printed here), and Airflow 3 itself: API server (the UI), scheduler
with LocalExecutor and DAG processor, on SQLite, everything listening on 127.0.0.1 only. The
daily DAG is switched on, so its scheduled run processes the demo day at once.

Ctrl-C stops everything it started. Run it again to start over.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from zoneinfo import ZoneInfo

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "include"), str(REPO / "plugins"), str(REPO), str(REPO / "scripts")]

from demo import seed  # noqa: E402

from platemask.paths import car_folder  # noqa: E402
from platemask.preflight import Outcome, Preflight, format_outcome, passed, run_checks  # noqa: E402
from tests.support.synthetic import make_car_photo, photo_jpeg  # noqa: E402

USER, PASSWORD = "admin", "platemask"


def main() -> int:
    tz = ZoneInfo(os.environ.get("PLATEMASK_TIMEZONE", "Asia/Tokyo"))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=8080, help="port of the UI on 127.0.0.1 (default 8080)")
    parser.add_argument("--out", type=Path, default=REPO / "ui-output", help="where everything goes")
    parser.add_argument(
        "--date", type=dt.date.fromisoformat, default=(dt.datetime.now(tz) - dt.timedelta(days=1)).date()
    )
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops everything too, like Ctrl-C
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started from a background shell
    with running_site(args.out.resolve(), args.date, port=args.port) as site:
        _welcome(site, args.date)
        try:
            site.follow_chatwork()
        except KeyboardInterrupt:
            print("\nStopping Airflow, PostgreSQL and the Chatwork stand-in …")
    return 0


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


class UiSite:
    """What ``make ui`` runs, for the script and for the browser tests."""

    def __init__(self, cluster, chatwork, root: Path, logs: Path, days: list[dt.date]) -> None:
        self.cluster, self.chatwork, self.root, self.logs, self.days = cluster, chatwork, root, logs, days

    @property
    def url(self) -> str:
        return self.cluster.url

    def follow_chatwork(self, every: float = 1.0) -> None:
        """Print each Chatwork message as it arrives, until interrupted."""
        shown = 0
        while True:
            messages = self.chatwork.messages
            for message in messages[shown:]:
                print(f"\n--- Chatwork message {message['message_id']} ---\n{message['body']}\n", flush=True)
            shown = len(messages)
            time.sleep(every)


def running_site(out: Path, day: dt.date, *, port: int | None = None):
    """Context manager: the site database, photos, Chatwork stand-in and Airflow, all running."""
    import contextlib

    import pgserver

    from tests.fakes.chatwork import FakeChatwork
    from tests.support import cluster

    @contextlib.contextmanager
    def started():
        if out.exists():
            shutil.rmtree(out)
        root, logs, home = out / "photos", out / "logs", out / "airflow"
        for folder in (root, logs, home):
            folder.mkdir(parents=True)
        server = pgserver.get_server(out / "pgdata", cleanup_mode="stop")
        try:
            seed(server.get_uri(), root, day)
            earlier = [day - dt.timedelta(days=2), day - dt.timedelta(days=1)]
            _seed_earlier_days(server.get_uri(), root, earlier)
            socket_dir = server.get_uri().split("host=", 1)[1]
            passwords = home / "passwords.json"
            passwords.write_text(json.dumps({USER: PASSWORD}))
            with FakeChatwork(token="ui-token") as chatwork:
                env = {
                    "S3_MOUNT": str(root),
                    "LOG_DIR": str(logs),
                    "AIRFLOW_CONN_UPLOAD_DB": json.dumps(
                        {"conn_type": "postgres", "host": socket_dir, "login": "postgres", "schema": "postgres"}
                    ),
                    "CHATWORK_API_KEY": "ui-token",
                    "CHATWORK_ROOM_ID": "1",
                    "CHATWORK_API_URL": chatwork.url,
                    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:admin",
                    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
                    "YOLO_AUTOINSTALL": "False",
                    "YOLO_OFFLINE": "True",
                    "YOLO_CONFIG_DIR": str(home / "ultralytics"),
                }
                env = {k: v for k, v in env.items() if v}
                # The preflight runs while Airflow starts, so its model check (about 1 s) adds no wait.
                with ThreadPoolExecutor(max_workers=1) as pool:
                    checked = pool.submit(_preflight, {**os.environ, **env})
                    with cluster.running(home, env, slots=2, port=port) as airflow:
                        _report(checked.result())
                        airflow.wait(
                            lambda: "plate_masking_daily" in airflow.airflow("dags", "list"),
                            180,
                            "the DAGs to be parsed",
                        )
                        airflow.airflow("dags", "unpause", "plate_masking_daily")
                        yield UiSite(airflow, chatwork, root, logs, [*earlier, day])
        finally:
            server.cleanup()

    return started()


def _preflight(environ: dict[str, str]) -> list[Outcome]:
    """``platemask check`` against this stack (the site database through psycopg2, not Airflow)."""
    return list(run_checks(Preflight(environ)))


def _report(outcomes: list[Outcome]) -> None:
    """Print the check's lines; stop here, Airflow and all, when a required check failed."""
    print("platemask check:", *(format_outcome(outcome) for outcome in outcomes), sep="\n  ", flush=True)
    if not passed(outcomes):
        raise SystemExit("make ui: a required check failed (FAIL above); nothing was left running")


def _seed_earlier_days(db_url: str, root: Path, days: list[dt.date]) -> None:
    """Two cars a day on the days before the demo day: something for a backfill to do."""
    import psycopg

    with psycopg.connect(db_url, autocommit=True) as conn:
        for n, day in enumerate(days):
            for car in range(2):
                car_id = str(10419000 + n * 10 + car)
                folder = root / car_folder(car_id).strip("/")
                folder.mkdir(parents=True, exist_ok=True)
                name = f"{car_id}001.jpg"
                (folder / name).write_bytes(photo_jpeg(make_car_photo(200 + n * 10 + car).image, quality=90))
                created = dt.datetime.combine(day, dt.time(10, car))
                conn.execute(
                    "INSERT INTO upload_files (car_cd, branch_no, file_path, created_at, updated_at)"
                    " VALUES (%s, 1, %s, %s, %s)",
                    (int(car_id), f"{car_folder(car_id)}{name}", created, created),
                )


def _welcome(site: UiSite, day: dt.date) -> None:
    first, second = site.days[0], site.days[1]
    print(
        f"""
Airflow is up: {site.url}   (log in as {USER} / {PASSWORD}; only this machine can reach it)

The demo day {day} is in the site database and the daily DAG is on: its scheduled run for
{day} is processing it now. Things to try, as an operator would:
  * Dags → plate_masking_daily → the run of {day}: mask_car shows one task per car, labelled with
    its car id; car 10418475 is red (a corrupt upload). Its log says why.
  * Fix that car: copy a good photo over {site.root}/upfile/1041/8475/10418475003.jpg, then
    Clear its mask_car task (keep "Downstream" selected) and watch finish_day send a new summary.
  * Trigger → Backfill, {first} to {second}: two past days, two cars each. The pickers are
    in the UI's time zone: set it to Asia/Tokyo in the user menu first.
  * plate_masking_restore → Trigger: its form, a dry run, then a real restore.
  * The run's "Photos to check" tab: car 10418457's far car, its plate missed by the model.
    Open it, Add mask (drag over the plate), Save: its .detect/ copy is masked again.
Photos: {site.root}   tracking files: {site.logs / "tracking"}
Chatwork messages appear below. Ctrl-C stops everything.
""",
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
