"""The crash campaign: the daily run killed with SIGKILL at random moments, then one clean run.

After every kill nothing may be lost or half-written: backups equal the originals as uploaded,
each original is untouched or a complete banner JPEG of that upload, ``.detect/`` files are
complete JPEGs, and every tracking file is valid JSON. After one clean run every good photo is
``done`` and the photos equal those of a run that was never interrupted.

``make test`` kills a few runs; ``make chaos`` kills 50 (``PLATEMASK_CHAOS_KILLS``). The moments
come from ``PLATEMASK_CHAOS_SEED`` (printed, so a failure can be replayed).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from platemask.images import output_source, sha256
from tests.support.site import Site, Upload, valid_tracking
from tests.support.synthetic import make_car_photo, photo_jpeg

pytestmark = pytest.mark.e2e

DAY = dt.date(2026, 2, 3)
KILLS = int(os.environ.get("PLATEMASK_CHAOS_KILLS", "3"))
AIRFLOW = str(Path(sys.executable).with_name("airflow"))


def _seed(site: Site) -> tuple[list[Upload], Upload]:
    good = []
    for car in range(4):
        for branch in (1, 2, 3):
            car_id = 10418430 + car
            photo = make_car_photo(car * 10 + branch, size=(960, 720))
            good.append(
                site.add(car_id, f"{car_id}{branch:03d}.jpg", photo_jpeg(photo.image), branch_no=branch, day=DAY)
            )
    truncated = photo_jpeg(make_car_photo(99).image)
    bad = site.add(10418499, "10418499001.jpg", truncated[: len(truncated) // 2], branch_no=1, day=DAY)
    return good, bad


def _run_day(env: dict[str, str], log: Path, kill_after: float | None = None, *, force: bool = False) -> float:
    """``airflow dags test`` of the day, SIGKILLed (with everything it started) after ``kill_after`` s."""
    started = time.monotonic()
    conf = ["--conf", json.dumps({"force": True})] if force else []
    with log.open("a") as out:
        process = subprocess.Popen(
            [AIRFLOW, "dags", "test", *conf, "plate_masking_daily", DAY.isoformat()],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            process.wait(timeout=kill_after if kill_after is not None else 600)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return time.monotonic() - started


def _complete_jpeg(data: bytes) -> bool:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return image is not None and data.rstrip(b"\0").endswith(b"\xff\xd9")


def _violations(root: Path, logs: Path, uploads: list[Upload]) -> list[str]:
    found = []
    for upload in uploads:
        folder, name = upload.path.lstrip("/").rsplit("/", 1)
        backup, original, detect = (
            root / folder / ".backup" / name,
            root / upload.path.lstrip("/"),
            root / folder / ".detect" / name,
        )
        if backup.exists() and backup.read_bytes() != upload.original:
            found.append(f"{backup}: backup differs from the upload")
        current = original.read_bytes()
        if current != upload.original and not (
            output_source(current) == sha256(upload.original) and _complete_jpeg(current)
        ):
            found.append(f"{original}: neither the upload nor a complete banner JPEG of it")
        if detect.exists() and not _complete_jpeg(detect.read_bytes()):
            found.append(f"{detect}: not a complete JPEG")
    for path in sorted((logs / "tracking").rglob("*.json")):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            found.append(f"{path}: invalid JSON ({exc})")
            continue
        if path.parent.name == "tracking":
            valid_tracking(doc)
    return found


def _reference_run(site: Site, tmp_path: Path, good: list[Upload]) -> tuple[Path, float]:
    """The same day on a copy of the photos, never interrupted: the bytes every other run must give."""
    root, logs = tmp_path / "reference", tmp_path / "reference-logs"
    shutil.copytree(site.root, root)
    took = _run_day({**os.environ, "S3_MOUNT": str(root), "LOG_DIR": str(logs)}, tmp_path / "reference.log")
    assert not _violations(root, logs, good)
    return root, took


def _assert_day_complete_as(reference_root: Path, site: Site, logs: Path, good: list[Upload], bad: Upload) -> None:
    """Every good photo ``done``, the bad one ``error``, and the files as the reference run left them."""
    doc = valid_tracking(json.loads((logs / "tracking" / f"processed_{DAY:%Y%m%d}.json").read_text()))
    by_path = {r["path"]: r for r in doc["processed"].values()}
    assert {u.path: by_path[u.path]["status"] for u in good} == {u.path: "done" for u in good}
    assert by_path[bad.path]["status"] == "error"
    for upload in good:  # one banner, the same masks: as if the day had run once, uninterrupted
        folder, name = upload.path.lstrip("/").rsplit("/", 1)
        for relative in (upload.path.lstrip("/"), f"{folder}/.detect/{name}", f"{folder}/.backup/{name}"):
            assert (site.root / relative).read_bytes() == (reference_root / relative).read_bytes(), relative


def test_killed_runs_lose_nothing_and_one_clean_run_completes_the_day(site: Site, chatwork, tmp_path: Path) -> None:
    seed = int(os.environ.get("PLATEMASK_CHAOS_SEED") or random.randrange(1 << 30))
    print(f"crash campaign: {KILLS} kills, PLATEMASK_CHAOS_SEED={seed}")
    rng = random.Random(seed)
    good, bad = _seed(site)
    logs = Path(os.environ["LOG_DIR"])

    reference_root, took = _reference_run(site, tmp_path, good)  # its length sets the kill window
    env = dict(os.environ)
    print(f"uninterrupted run: {took:.1f} s")

    for kill in range(KILLS):
        # Every other run is forced, so that photos are written again (from their backups) in
        # every later run too, not only until the first run that gets through.
        moment, force = rng.uniform(0.25 * took, 1.05 * took), kill % 2 == 1
        _run_day(env, tmp_path / "killed.log", kill_after=moment, force=force)
        print(f"kill {kill + 1} at {moment:.1f} s{' (force)' if force else ''}: {_states(logs)}")
        problems = _violations(site.root, logs, good)
        assert not problems, f"after kill {kill + 1} at {moment:.1f} s (seed {seed}): {problems}"

    _run_day(env, tmp_path / "clean.log")
    assert not _violations(site.root, logs, good)
    _assert_day_complete_as(reference_root, site, logs, good, bad)


def _states(logs: Path) -> dict[str, int]:
    """How many records are in each state, day file and parts together (what the kill interrupted)."""
    from collections import Counter

    day = logs / "tracking" / f"processed_{DAY:%Y%m%d}.json"
    records = json.loads(day.read_text())["processed"] if day.exists() else {}
    for part in (logs / "tracking").glob("*.parts/*.json"):
        records |= json.loads(part.read_text())["records"]
    return dict(Counter(r["status"] for r in records.values()))


def test_the_same_day_run_twice_at_once(site: Site, chatwork, tmp_path: Path) -> None:
    """A manual run started while the scheduled one is running (or a backfill over it)."""
    good, bad = _seed(site)
    logs = Path(os.environ["LOG_DIR"])
    reference_root, _ = _reference_run(site, tmp_path, good)
    env = dict(os.environ)

    runs = [
        subprocess.Popen(
            [AIRFLOW, "dags", "test", "plate_masking_daily", DAY.isoformat()],
            env=env,
            stdout=(tmp_path / f"run{n}.log").open("w"),
            stderr=subprocess.STDOUT,
        )
        for n in (1, 2)
    ]
    for run in runs:
        run.wait(timeout=600)
    assert not _violations(site.root, logs, good)
    _assert_day_complete_as(reference_root, site, logs, good, bad)
