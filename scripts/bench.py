"""Benchmark: what a car task costs and how fast a day goes through Airflow. Prints figures; asserts nothing.

1. Start-up of a car task process, to the model being ready: the direct OpenVINO path in a fresh
   interpreter, the same in a process forked from a parent that preloaded the imports (what
   plugins/airflow_local_settings.py does in Airflow's workers), and the old ultralytics path.
2. One day of uploads, the same photos, side by side:
   - the customer's script as its description reads: for each photo read, detect (ultralytics,
     ONNX, one pass, conf 0.25), mask, banner, write; one after the other, nothing else;
   - ``airflow dags test plate_masking_daily`` (one process), with and without the second look;
   - a real Airflow: API server, scheduler (LocalExecutor, parallelism 2) and DAG processor, the
     ``PLATEMASK_CAR_TASKS=2`` as docs/operations/capacity.md says, the day run by the schedule.
   For each: photos/s, CPU-s per photo (the whole machine's busy time while it ran, so Airflow's
   own processes count), and the ratio to the script; for the scheduler run also each car task's
   wall time and its CPU until the model was ready (its start-up: fork, DAG parse, imports,
   model), from the task logs.

    .venv/bin/python scripts/bench.py [--cars 11] [--photos-per-car 10] [--photos DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import re
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from zoneinfo import ZoneInfo

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "include"), str(REPO / "plugins"), str(REPO)]
os.environ.setdefault("YOLO_AUTOINSTALL", "False")
os.environ.setdefault("YOLO_OFFLINE", "True")
os.environ.setdefault("YOLO_CONFIG_DIR", str(Path(tempfile.gettempdir()) / "platemask-bench-yolo"))

SITE_TZ = ZoneInfo(os.environ.get("PLATEMASK_TIMEZONE", "Asia/Tokyo"))

START_DIRECT = """
import json, time
from platemask.config import DetectOptions
from platemask.detect import PlateDetector
import platemask.pipeline
detector = PlateDetector(DetectOptions())
detector.load_async().result()
print(json.dumps({"cpu": time.process_time()}))
"""

START_FORKED = """
import json, os, time
import openvino, platemask.pipeline, platemask.runtime  # what the worker preloads
read, write = os.pipe()
if os.fork() == 0:
    from platemask.config import DetectOptions
    from platemask.detect import PlateDetector
    detector = PlateDetector(DetectOptions())
    detector.load_async().result()
    os.write(write, json.dumps({"cpu": time.process_time()}).encode())
    os._exit(0)
os.close(write)
_, status = os.wait()
assert status == 0, f"the forked task failed ({status})"
print(os.read(read, 1000).decode())
"""

START_ULTRALYTICS = """
import json, sys, time
import numpy as np
from ultralytics import YOLO
model = YOLO(sys.argv[1], task="segment")
model.predict(np.zeros((64, 64, 3), np.uint8), verbose=False)
print(json.dumps({"cpu": time.process_time()}))
"""

# The script platemask replaces, as its description reads.
SEQUENTIAL = """
import json, sys
from pathlib import Path
import cv2
from ultralytics import YOLO
from platemask.config import RenderOptions
from platemask.detect import _detections, platedet_onnx
from platemask.render import render_outputs
root, rows = Path(sys.argv[1]), json.loads(sys.argv[2])
yolo = YOLO(str(platedet_onnx()), task="segment")
for row in rows:
    path = root / row["file_path"].lstrip("/")
    image = cv2.imread(str(path))
    found = _detections(yolo.predict(image, conf=0.25, verbose=False)[0])
    masked, banner = render_outputs(image, found, first=row["branch_no"] == 1, options=RenderOptions())
    target = path.parent / ".detect" / path.name
    target.parent.mkdir(exist_ok=True)
    cv2.imwrite(str(target), masked, [cv2.IMWRITE_JPEG_QUALITY, 92])
    if banner is not None:
        cv2.imwrite(str(path), banner, [cv2.IMWRITE_JPEG_QUALITY, 92])
"""

TASK_COST = re.compile(
    r"Task cost: ([\d.]+) CPU-s until the model was ready \(([\d.]+) before execute\), "
    r"([\d.]+) CPU-s in all for (\d+) photos"
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cars", type=int, default=11)
    parser.add_argument("--photos-per-car", type=int, default=10)
    parser.add_argument("--photos", type=Path, help="your JPEGs (e.g. shared/platedata/openalpr_br/images)")
    parser.add_argument("--skip-scheduler", action="store_true", help="leave out the real scheduler run")
    parser.add_argument("--skip-startup", action="store_true", help="leave out section 1")
    parser.add_argument("--slots", type=int, default=2, help="car tasks at once (PLATEMASK_CAR_TASKS and parallelism)")
    args = parser.parse_args()
    print(f"Machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    if not args.skip_startup:
        startup()
    work = Path(tempfile.mkdtemp(prefix="platemask-bench-"))
    try:
        day_side_by_side(work, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def startup() -> None:
    """Section 1: CPU-s from process start to the model being ready, three ways."""
    from platemask.detect import platedet_onnx

    print("\n1. A car task's start-up: CPU-s until the plate model is ready (median of 3)")
    runs = {
        "direct OpenVINO, fresh interpreter": (START_DIRECT,),
        "direct OpenVINO, forked from a preloaded worker": (START_FORKED,),
        "ultralytics (the old path), fresh interpreter": (START_ULTRALYTICS, str(platedet_onnx())),
    }
    for label, (code, *argv) in runs.items():
        cpus = [_child(code, *argv)["cpu"] for _ in range(3)]
        print(f"   {label:<50} {statistics.median(cpus):5.2f} CPU-s")


def day_side_by_side(work: Path, args: argparse.Namespace) -> None:
    """Section 2: one day's photos through the script, ``airflow dags test`` and a real scheduler."""
    import pgserver

    day = (dt.datetime.now(SITE_TZ) - dt.timedelta(days=1)).date()  # the day the schedule runs now
    pristine = work / "pristine"
    rows = _make_day(pristine, args.cars, args.photos_per_car, args.photos)
    server = pgserver.get_server(work / "pgdata", cleanup_mode="stop")
    try:
        results, tasks = _runs(work, pristine, rows, day, server, args)
    finally:
        server.cleanup()
    _print_day(results, tasks, len(rows))


def _runs(work: Path, pristine: Path, rows: list[dict], day: dt.date, server, args) -> tuple[dict, list[dict]]:
    _seed(server.get_uri(), rows, day)
    socket_dir = server.get_uri().split("host=", 1)[1]
    photos = len(rows)
    print(f"\n2. One day ({day}): {photos} photos in {args.cars} cars, the same photos for every run")
    results: dict[str, dict] = {}
    mount = _fresh_copy(pristine, work / "script")
    results["the script it replaces (sequential)"] = _timed(
        [sys.executable, "-c", SEQUENTIAL, str(mount), json.dumps(rows)], _env()
    )
    # The second look's cost, side by side: the same one-process run without it.
    for label, folder, mode in (
        ("airflow dags test, second look off", "dags-test-off", "off"),
        ("airflow dags test (one process)", "dags-test", None),
    ):
        env = _airflow_env(work / folder, _fresh_copy(pristine, work / folder / "mount"), socket_dir)
        if mode:
            env["PLATEMASK_SECOND_LOOK"] = mode
        _airflow(env, "db", "migrate")
        results[label] = _timed([_bin("airflow"), "dags", "test", "plate_masking_daily", day.isoformat()], env)
    tasks: list[dict] = []
    if not args.skip_scheduler:
        results[f"real scheduler, LocalExecutor, {args.slots} car tasks at once"], tasks = _scheduler_run(
            work / "scheduler", _fresh_copy(pristine, work / "scheduler" / "mount"), socket_dir, args.slots
        )
    return results, tasks


def _print_day(results: dict, tasks: list[dict], photos: int) -> None:
    base = photos / results["the script it replaces (sequential)"]["wall"]
    print(f"   {'run':<42} {'wall s':>7} {'photos/s':>9} {'CPU-s/photo':>12} {'vs script':>10}")
    for label, run in results.items():
        rate = photos / run["wall"]
        print(f"   {label:<42} {run['wall']:7.1f} {rate:9.2f} {run['cpu'] / photos:12.3f} {rate / base:9.2f}×")
    if tasks:
        ready = [t["ready_cpu"] for t in tasks]
        per_photo = [(t["total_cpu"] - t["ready_cpu"]) / t["photos"] for t in tasks]
        print(f"   car tasks: {len(tasks)}, wall {statistics.median(t['wall'] for t in tasks):.1f} s median;")
        print(
            f"   start-up until the model is ready {statistics.median(ready):.2f} CPU-s median "
            f"(max {max(ready):.2f}), of which {statistics.median(t['before_execute_cpu'] for t in tasks):.2f} "
            f"before the operator ran; photo work {statistics.median(per_photo):.3f} CPU-s per photo in the task"
        )


def _scheduler_run(
    home: Path, mount: Path, socket_dir: str, slots: int, car_tasks: int | None = None
) -> tuple[dict, list[dict]]:
    """Unpause the DAG on a real scheduler and time the scheduled run of the day, start to end.

    The bench itself must cost next to nothing while the run goes: an ``airflow`` command costs
    about 3.5 CPU-s (it imports Airflow), which on two cores would slow the very run it
    measures. So the DAG is unpaused through the REST API and the run's state is read from the
    metadata database.
    """
    from tests.support import cluster

    env = _airflow_env(home, mount, socket_dir)
    names = ("S3_MOUNT", "LOG_DIR", "AIRFLOW_CONN_UPLOAD_DB", "YOLO_CONFIG_DIR")
    extra = {name: env[name] for name in names} | {"AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True"}
    if car_tasks:
        extra["PLATEMASK_CAR_TASKS"] = str(car_tasks)
    with cluster.running(home / "airflow", extra, slots=slots) as airflow:
        airflow.wait(lambda: "plate_masking_daily" in airflow.airflow("dags", "list"), 300, "the DAG to be parsed")
        api = _api_session(airflow.url)
        # The API server builds its task-facing (execution) API on the first call to it, about
        # 4 s, once per API server process: a start-up cost like the others, not the day's.
        api.get(f"{airflow.url}/execution/health", timeout=60).raise_for_status()
        time.sleep(5)  # let the components settle: their start-up is not the day's cost
        components0, busy0, wall0 = _components_cpu(airflow.pids), _machine_busy(), time.perf_counter()
        api.patch(f"{airflow.url}/api/v2/dags/plate_masking_daily", json={"is_paused": False}).raise_for_status()
        states = _wait_for_run(home / "airflow" / "airflow.db")
        wall, cpu = time.perf_counter() - wall0, _machine_busy() - busy0
        components = {name: cpu_s - components0.get(name, 0.0) for name, cpu_s in _components_cpu(airflow.pids).items()}
        if states != ["success"]:
            print(f"   (scheduler run ended {states})")
        tasks = _car_tasks(home / "airflow")
    _print_components(components, cpu, tasks)
    return {"wall": wall, "cpu": cpu}, tasks


def _api_session(url: str):
    """A requests session with a token of the API server (all users are admins in this cluster)."""
    import requests

    session = requests.Session()
    deadline = time.monotonic() + 180
    while True:  # the API server may still be starting
        try:
            session.get(f"{url}/api/v2/monitor/health", timeout=10).raise_for_status()
            break
        except requests.RequestException:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)
    token = session.get(f"{url}/auth/token", timeout=30)
    token.raise_for_status()
    session.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
    return session


def _wait_for_run(db_path: Path, timeout: float = 1800) -> list[str]:
    """Poll the metadata database (read-only) until every run of the DAG has finished."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5) as db:
                states = [
                    row[0]
                    for row in db.execute("SELECT state FROM dag_run WHERE dag_id = 'plate_masking_daily'").fetchall()
                ]
        except sqlite3.OperationalError:  # the scheduler is writing: look again
            states = []
        if states and all(state in ("success", "failed") for state in states):
            return states
        time.sleep(0.5)
    raise TimeoutError("the scheduled run did not finish")


def _components_cpu(pids: dict[str, int]) -> dict[str, float]:
    """CPU-s of each component's process tree so far: the live processes and the children they reaped."""
    import psutil

    totals = {}
    for name, pid in pids.items():
        total = 0.0
        try:
            root = psutil.Process(pid)
            for process in [root, *root.children(recursive=True)]:
                with contextlib.suppress(psutil.NoSuchProcess):
                    times = process.cpu_times()
                    total += times.user + times.system + times.children_user + times.children_system
        except psutil.NoSuchProcess:
            pass
        totals[name] = total
    return totals


def _print_components(components: dict[str, float], machine_cpu: float, tasks: list[dict]) -> None:
    """Where the machine's CPU went during the scheduled run."""
    in_tasks = sum(t["total_cpu"] for t in tasks)
    scheduler = components.get("scheduler", 0.0)
    parts = {
        "car task processes (from their logs)": in_tasks,
        "scheduler, its executor workers and the other tasks": scheduler - in_tasks,
        "API server": components.get("api-server", 0.0),
        "DAG processor": components.get("dag-processor", 0.0),
    }
    parts["the rest of the machine (the bench, the OS)"] = machine_cpu - sum(parts.values())
    print("   where the CPU went: " + "; ".join(f"{label} {sec:.1f} s" for label, sec in parts.items()))


def _car_tasks(home: Path) -> list[dict]:
    """Each mask_car task's wall time (metadata DB) and CPU figures (its log's cost line)."""
    db = sqlite3.connect(home / "airflow.db")
    walls = dict(db.execute("SELECT map_index, duration FROM task_instance WHERE task_id = 'mask_car'").fetchall())
    _print_timeline(db)
    tasks = []
    for log in sorted(home.glob("logs/dag_id=plate_masking_daily/*/task_id=mask_car/map_index=*/attempt=*.log")):
        found = TASK_COST.search(log.read_text(encoding="utf-8", errors="replace"))
        index = int(log.parent.name.split("=")[1])
        if found:
            ready, before, total, photos = float(found[1]), float(found[2]), float(found[3]), int(found[4])
            tasks.append(
                {
                    "wall": walls.get(index) or 0.0,
                    "ready_cpu": ready,
                    "before_execute_cpu": before,
                    "total_cpu": total,
                    "photos": photos,
                }
            )
    return tasks


def _print_timeline(db: sqlite3.Connection) -> None:
    """Where the scheduled run's wall time went: each task's span, and the gaps between them."""
    import datetime as _dt

    def when(value: str) -> float:
        return _dt.datetime.fromisoformat(value).timestamp()

    run_start, run_end = (when(v) for v in db.execute("SELECT start_date, end_date FROM dag_run").fetchone())
    spans = {
        task: (when(start), when(end))
        for task, start, end in db.execute(
            "SELECT task_id, min(start_date), max(end_date) FROM task_instance GROUP BY task_id"
        ).fetchall()
    }
    plan, cars, finish = spans["plan_uploads"], spans["mask_car"], spans["finish_day"]
    steps = [
        ("run created → plan_uploads starts", plan[0] - run_start),
        ("plan_uploads", plan[1] - plan[0]),
        ("→ first mask_car starts", cars[0] - plan[1]),
        ("all mask_car tasks", cars[1] - cars[0]),
        ("→ finish_day starts", finish[0] - cars[1]),
        ("finish_day", finish[1] - finish[0]),
        ("→ run marked done", run_end - finish[1]),
    ]
    print("   the scheduled run, from its creation: " + "; ".join(f"{label} {sec:.1f} s" for label, sec in steps))
    _print_slot_gaps(db, when)


def _print_slot_gaps(db: sqlite3.Connection, when) -> None:
    """Between car tasks: from one ending to the next being queued (the scheduler seeing the free
    slot), and from queued to running (the executor starting the task process), medians and the
    longest (a worker slot held after its task ended shows only in the longest)."""
    rows = db.execute(
        "SELECT queued_dttm, start_date, end_date FROM task_instance WHERE task_id = 'mask_car' ORDER BY start_date"
    ).fetchall()
    tis = [(when(q), when(s), when(e)) for q, s, e in rows if q and s and e]
    ends = sorted(e for _, _, e in tis)
    to_queued = []
    for queued, _, _ in tis:
        freed = [e for e in ends if e <= queued]
        if freed:  # this task waited for a slot: the latest task to end before it was queued freed it
            to_queued.append(queued - freed[-1])
    to_running = [start - queued for queued, start, _ in tis]
    running = [end - start for _, start, end in tis]
    if to_queued:
        print(
            f"   between car tasks, median (longest): a task ends → the next is queued"
            f" {statistics.median(to_queued):.2f} s ({max(to_queued):.2f}); queued → running"
            f" {statistics.median(to_running):.2f} s ({max(to_running):.2f});"
            f" a task runs {statistics.median(running):.2f} s"
        )


def _machine_busy() -> float:
    """CPU-seconds the whole machine has been busy (user + nice + system + irq), from /proc/stat."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq = (int(v) for v in fields[:7])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def _timed(command: list[str], env: dict[str, str]) -> dict:
    busy0, wall0 = _machine_busy(), time.perf_counter()
    subprocess.run(command, env=env, check=True, capture_output=True)
    return {"wall": time.perf_counter() - wall0, "cpu": _machine_busy() - busy0}


def _make_day(root: Path, cars: int, per_car: int, photos: Path | None) -> list[dict]:
    from platemask.paths import car_folder
    from tests.support.synthetic import make_car_photo, photo_jpeg

    own = sorted(p for p in photos.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg")) if photos else []
    rows = []
    for c in range(cars):
        car_id = str(10418430 + c)
        folder = root / car_folder(car_id).strip("/")
        folder.mkdir(parents=True, exist_ok=True)
        for n in range(1, per_car + 1):
            name = f"{car_id}{n:03d}.jpg"
            seed = c * 100 + n
            data = own[seed % len(own)].read_bytes() if own else photo_jpeg(make_car_photo(seed).image, quality=90)
            (folder / name).write_bytes(data)
            rows.append({"car_id": car_id, "file_path": f"{car_folder(car_id)}{name}", "branch_no": n})
    return rows


def _seed(dsn: str, rows: list[dict], day: dt.date) -> None:
    import psycopg

    table = (REPO / "include" / "sql" / "upload_files.sql").read_text(encoding="utf-8")
    created = dt.datetime.combine(day, dt.time(10))
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS upload_files")
        conn.execute(table)
        for row in rows:
            conn.execute(
                "INSERT INTO upload_files (car_cd, branch_no, file_path, created_at, updated_at)"
                " VALUES (%s, %s, %s, %s, %s)",
                (int(row["car_id"]), row["branch_no"], row["file_path"], created, created),
            )


def _fresh_copy(pristine: Path, target: Path) -> Path:
    shutil.copytree(pristine, target)
    return target


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": f"{REPO / 'include'}:{REPO / 'plugins'}:{REPO}"}


def _airflow_env(home: Path, mount: Path, socket_dir: str) -> dict[str, str]:
    home.mkdir(parents=True, exist_ok=True)
    return {
        **_env(),
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW_CONN_UPLOAD_DB": json.dumps(
            {"conn_type": "postgres", "host": socket_dir, "login": "postgres", "schema": "postgres"}
        ),
        "S3_MOUNT": str(mount),
        "LOG_DIR": str(home / "logs-platemask"),
        "YOLO_CONFIG_DIR": str(home / "ultralytics"),
    }


def _bin(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def _airflow(env: dict[str, str], *command: str) -> None:
    subprocess.run([_bin("airflow"), *command], env=env, check=True, capture_output=True)


def _child(code: str, *argv: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, env=_env(), check=False)
    if out.returncode != 0:  # say why: the measured process's own error, not only its exit status
        raise RuntimeError(f"bench child process failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    sys.exit(main())
