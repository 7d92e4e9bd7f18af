"""Benchmark: what a car task costs on this machine. Prints figures; asserts nothing.

1. Cold start of a task process: importing ultralytics and loading the model (ONNX vs the
   OpenVINO copy ``platemask prepare-model`` makes), in fresh interpreters, CPU and wall time.
2. One car, end to end on a local folder: platemask's pipeline (prefetch, overlapped I/O, one
   inference per photo, OpenVINO) against a plain sequential loop like the script it replaces
   (read, detect with the ONNX model, mask, write, one photo after the other), same photos.
   Peak memory (RSS) of each: the figure to size worker concurrency.

    .venv/bin/python scripts/bench.py [--photos 20] [--large 4]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "include"), str(REPO)]
os.environ.setdefault("YOLO_AUTOINSTALL", "False")
os.environ.setdefault("YOLO_OFFLINE", "True")
os.environ.setdefault("YOLO_CONFIG_DIR", str(Path(tempfile.gettempdir()) / "platemask-bench-yolo"))

COLD_START = """
import json, os, resource, sys, time
t0, c0 = time.perf_counter(), time.process_time()
import numpy as np
from platemask.config import DetectOptions
from platemask.detect import PlateDetector
detector = PlateDetector(DetectOptions(model=sys.argv[1]))
detector.load_async().result()
load = (time.perf_counter() - t0, time.process_time() - c0)
image = np.zeros((960, 1280, 3), np.uint8)
t1 = time.perf_counter()
for _ in range(5):
    detector.detect([image])
print(json.dumps({"load_wall": load[0], "load_cpu": load[1], "infer": (time.perf_counter() - t1) / 5}))
"""

# Both car runs are timed from interpreter start, imports and model load included: a task's cost.
ONE_CAR = """
import time
t0, c0 = time.perf_counter(), time.process_time()
import datetime as dt, json, resource, sys
from platemask.config import Settings
from platemask.daily import plan_day, process_cars
from platemask.storage import LocalStorage
from platemask.tracking import DayTracking
root, logs, rows, flip = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4]
settings = Settings.from_env({"S3_MOUNT": root, "LOG_DIR": logs, "PLATEMASK_FLIP": flip})
tracking = DayTracking.for_settings(settings, dt.date(2026, 2, 3))
plan = plan_day(rows, tracking, force=True)
process_cars(plan.batches[0], tracking, settings=settings, store=LocalStorage(root))
print(json.dumps({"wall": time.perf_counter() - t0, "cpu": time.process_time() - c0,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

# The script platemask replaces, as its description reads: for each photo, read it, detect with
# the ONNX model, mask, add the banner, write; one photo after the other, no backup, no checks.
SEQUENTIAL = """
import time
t0, c0 = time.perf_counter(), time.process_time()
import json, resource, sys
from pathlib import Path
import cv2
from ultralytics import YOLO
from platemask.config import RenderOptions
from platemask.detect import _detections, platedet_onnx
from platemask.render import render_outputs
root, rows = Path(sys.argv[1]), json.loads(sys.argv[2])
yolo = YOLO(str(platedet_onnx()), task="segment")
for row in rows:
    image = cv2.imread(str(root / row["file_path"].lstrip("/")))
    found = _detections(yolo.predict(image, conf=0.10, verbose=False)[0])
    masked, banner = render_outputs(image, found, first=row["branch_no"] == 1, options=RenderOptions())
    target = root.parent / "sequential" / row["file_path"].lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(target), masked, [cv2.IMWRITE_JPEG_QUALITY, 92])
    if banner is not None:
        cv2.imwrite(str(target.with_suffix(".first.jpg")), banner, [cv2.IMWRITE_JPEG_QUALITY, 92])
print(json.dumps({"wall": time.perf_counter() - t0, "cpu": time.process_time() - c0,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=20, help="photos of 1280×960 in the car")
    parser.add_argument("--large", type=int, default=4, help="extra phone photos of 4000×3000")
    args = parser.parse_args()

    from platemask.detect import platedet_onnx, prepared_model_dir

    print(f"Machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    print("\n1. Cold start of a task process (import ultralytics + load model + first inference)")
    models = {"ONNX Runtime (platedet.onnx)": platedet_onnx(), "OpenVINO (prepared copy)": prepared_model_dir()}
    for label, model in models.items():
        if not Path(model).exists():
            print(f"   {label}: missing ({model})")
            continue
        out = _child(COLD_START, str(model))
        print(
            f"   {label}: {out['load_wall']:.1f} s wall, {out['load_cpu']:.1f} s CPU to load; "
            f"{out['infer'] * 1000:.0f} ms per inference at 640²"
        )

    workdir = Path(tempfile.mkdtemp(prefix="platemask-bench-"))
    rows = _make_car(workdir / "mount", args.photos, args.large)
    total = len(rows)
    print(f"\n2. One car of {total} photos ({args.photos} × 1280×960, {args.large} × 4000×3000 EXIF-rotated),")
    print("   each run a fresh process timed from its start (imports and model load included)")
    runs = {
        "sequential script (ONNX, read-detect-mask-write)": _child(
            SEQUENTIAL, str(workdir / "mount"), json.dumps(rows)
        ),
        "platemask, single pass (PLATEMASK_FLIP=false)": _child(
            ONE_CAR, str(workdir / "mount"), str(workdir / "logs"), json.dumps(rows), "false"
        ),
        "platemask, default (mirrored second pass)": _child(
            ONE_CAR, str(workdir / "mount"), str(workdir / "logs"), json.dumps(rows), "true"
        ),
    }
    base = next(iter(runs.values()))["wall"]
    for label, run in runs.items():
        print(
            f"   {label:<52} {run['wall']:5.1f} s  {run['wall'] / total:.2f} s/photo  "
            f"{run['cpu']:5.1f} s CPU  {base / run['wall']:.2f}×  peak {run['rss_mb']:.0f} MB"
        )
    print("   (platemask also backs up every original, re-reads and checks every output, keeps tracking)")
    return 0


def _child(code: str, *argv: str) -> dict:
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'include'}:{REPO}"}
    out = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _make_car(root: Path, photos: int, large: int) -> list[dict]:
    from platemask.synthetic import encode_jpeg, make_car_photo

    folder = root / "upfile" / "1041" / "8430"
    folder.mkdir(parents=True)
    rows = []
    for n in range(1, photos + large + 1):
        big = n > photos
        photo = make_car_photo(n, size=(4000, 3000) if big else (1280, 960))
        name = f"10418430{n:03d}.jpg"
        (folder / name).write_bytes(encode_jpeg(photo.image, quality=90, exif_orientation=6 if big else None))
        rows.append({"file_id": n, "car_id": "10418430", "file_path": f"/upfile/1041/8430/{name}", "branch_no": n})
    return rows


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    sys.exit(main())
