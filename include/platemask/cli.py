"""``platemask`` command line: check an installation, try a model or a style on a folder, list photos to check,
restore, prepare the model, keep tracking files in check."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

from platemask.config import MASK_STYLES, SECOND_LOOK_MODES, Settings
from platemask.errors import PlateMaskError

__all__ = ["main"]

log = logging.getLogger("platemask")

_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``platemask`` command."""
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        return args.run(args)
    except PlateMaskError as exc:
        print(f"platemask: {exc.describe()}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="platemask", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    check = commands.add_parser(
        "check", help="check the installation (settings, model, storage, database, Chatwork, backups); 1 on failure"
    )
    check.add_argument(
        "--sql", type=Path, help="the site's query (default: include/sql/day_uploads.sql, as the daily DAG reads it)"
    )
    check.set_defaults(run=_check)

    mask = commands.add_parser("mask-dir", help="mask every image under IN_DIR into OUT_DIR")
    mask.add_argument("in_dir", type=Path, metavar="IN_DIR")
    mask.add_argument("out_dir", type=Path, metavar="OUT_DIR")
    mask.add_argument("--no-banner", action="store_true", help="do not draw the banner")
    mask.add_argument("--style", choices=MASK_STYLES, help="mask style (default: PLATEMASK_MASK_STYLE or fill)")
    mask.add_argument("--conf", type=float, help="confidence threshold (default: PLATEMASK_CONF or 0.35)")
    mask.add_argument(
        "--padding", type=float, help="mask padding, fraction of the plate (default: PLATEMASK_PADDING or 0.25)"
    )
    mask.add_argument("--model", help="model file or folder (default: PLATE_MODEL or the built-in model)")
    mask.add_argument(
        "--second-look",
        choices=SECOND_LOOK_MODES,
        help="look again at text the model left visible (default: PLATEMASK_SECOND_LOOK or mask)",
    )
    mask.set_defaults(run=_mask_dir)

    review = commands.add_parser("review", help="list the photos of a day that a person should check")
    review.add_argument("date", type=_date, metavar="DATE", help="site-local day, YYYY-MM-DD")
    review.add_argument(
        "--page", action="store_true", help="also (re)write the day's review page in LOG_DIR/review/ and print its path"
    )
    review.set_defaults(run=_review)

    retention = commands.add_parser(
        "tracking-retention",
        help="gzip / delete old tracking files as PLATEMASK_TRACKING_COMPRESS_AFTER_DAYS / _DELETE_AFTER_DAYS say",
    )
    retention.add_argument("--dry-run", action="store_true", help="only list what would be compressed or deleted")
    retention.set_defaults(run=_tracking_retention)

    corrections = commands.add_parser("corrections", help="the operators' fixes of photos (Airflow UI) as data")
    what = corrections.add_subparsers(required=True, metavar="ACTION")
    export = what.add_parser(
        "export", help="write the fixed photos with YOLO labels (training/build_dataset.py --corrections DIR)"
    )
    export.add_argument("out", type=Path, metavar="DIR")
    export.add_argument("--since", type=_date, help="first day, YYYY-MM-DD (default: 30 days ago)")
    export.set_defaults(run=_export_corrections)

    prepare = commands.add_parser("prepare-model", help="convert the built-in model to OpenVINO (install time)")
    prepare.add_argument("--out", type=Path, help="target folder (default: inside this Python environment)")
    prepare.set_defaults(run=_prepare_model)

    from platemask.restore import add_restore_command

    add_restore_command(commands)
    return parser


def _export_corrections(args: argparse.Namespace) -> int:
    from platemask.corrections import days_since, export_corrections
    from platemask.storage import open_storage
    from platemask.tracking import DayTracking, site_now

    settings = Settings.from_env()
    settings.require_storage()
    today = site_now(settings.timezone).date()
    days = days_since(args.since or today - dt.timedelta(days=30), today)
    _store, backups = open_storage(settings)
    counts = export_corrections(
        (DayTracking.for_settings(settings, day) for day in days), args.out, settings=settings, backups=backups
    )
    print(
        f"{counts['photos']} fixed photos ({counts['plates']} plates) and {counts['negatives']} hard negatives "
        f"from {days[0]} to {days[-1]} in {args.out}"
    )
    return 0


def _check(args: argparse.Namespace) -> int:
    from platemask.preflight import Preflight, format_outcome, passed, run_checks

    preflight = Preflight(environ=os.environ, **_airflow_connections())
    # Importing Airflow sets its own logging up: the check's lines are its output, not log records.
    log.setLevel(logging.INFO if args.verbose else logging.WARNING)
    if args.sql:
        preflight.sql_file = args.sql
    outcomes = []
    for outcome in run_checks(preflight):
        print(format_outcome(outcome), flush=True)
        outcomes.append(outcome)
    good = passed(outcomes)
    print("platemask check: " + ("ready" if good else "NOT ready: fix the FAIL lines above and run it again"))
    return 0 if good else 1


def _airflow_connections() -> dict[str, Any]:
    """Airflow's connections where Airflow is installed: the check then reaches what the tasks reach.

    Without Airflow the defaults apply: ``AIRFLOW_CONN_UPLOAD_DB`` through psycopg2, boto3's own
    credentials, and the CHATWORK_* variables.
    """
    try:
        from platemask_airflow.chatwork import ChatworkHook
        from platemask_airflow.storage import s3_client_factory
        from platemask_airflow.uploads import connect_upload_db
    except ImportError:
        return {}
    return {
        "connect_db": connect_upload_db,
        "s3_client": lambda settings: s3_client_factory(settings)(),
        "chatwork": lambda settings: ChatworkHook(settings=settings).get_conn(),
    }


def _prepare_model(args: argparse.Namespace) -> int:
    from platemask.detect import prepare_default_model

    print(prepare_default_model(args.out))
    return 0


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def _review(args: argparse.Namespace) -> int:
    from platemask.daily import publish_review
    from platemask.review import format_review_list, photos_to_review
    from platemask.storage import open_storage
    from platemask.tracking import DayTracking

    settings = Settings.from_env()
    tracking = DayTracking.for_settings(settings, args.date)
    records = photos_to_review(tracking.load()["processed"].values())
    print(format_review_list(args.date, records))
    if args.page:
        settings.require_storage()
        store, backups = open_storage(settings)
        page = publish_review(tracking, settings=settings, store=store, backups=backups)
        if page is None:
            return 2
        print(tracking.store.describe(page))
    return 0


def _tracking_retention(args: argparse.Namespace) -> int:
    from platemask.retention import apply_retention
    from platemask.storage import open_log_storage

    settings = Settings.from_env()
    if not (settings.tracking_compress_after_days or settings.tracking_delete_after_days):
        print("PLATEMASK_TRACKING_COMPRESS_AFTER_DAYS and _DELETE_AFTER_DAYS are unset: nothing to do")
        return 0
    result = apply_retention(open_log_storage(settings), settings, dry_run=args.dry_run)
    print("\n".join(result.lines(dry_run=args.dry_run)) or "no tracking file old enough")
    return 0


def _mask_dir(args: argparse.Namespace) -> int:
    from platemask.detect import PlateDetector
    from platemask.images import decode_any, encode_like, sha256
    from platemask.masking import find_masks
    from platemask.progress import Progress
    from platemask.render import add_banner, mask_plates
    from platemask.second_look import SecondLook
    from platemask.storage import atomic_write

    # One process works alone here, unlike car tasks side by side: let OpenVINO use every core.
    os.environ.setdefault("PLATEMASK_INFERENCE_THREADS", "0")
    settings = Settings.from_env()
    render = replace(
        settings.render,
        style=args.style or settings.render.style,
        padding=settings.render.padding if args.padding is None else args.padding,
        banner=None if args.no_banner else settings.render.banner,
    )
    # Through Settings, so the detector traces outlines exactly when the chosen style needs them.
    settings = settings.with_overrides(
        render=render,
        detect=replace(
            settings.detect, conf=args.conf or settings.detect.conf, model=args.model or settings.detect.model
        ),
    )
    detect = settings.detect
    files = sorted(p for p in args.in_dir.rglob("*") if p.suffix.lower() in _IMAGE_SUFFIXES and p.is_file())
    if not files:
        print(f"platemask: no .jpg/.jpeg/.png files under {args.in_dir}", file=sys.stderr)
        return 1
    detector = PlateDetector(detect)
    detector.load_async()
    options = replace(settings.second_look, mode=args.second_look or settings.second_look.mode)
    second_look = SecondLook(options)
    if second_look.enabled:
        second_look.load_async()
    progress = Progress(len(files), "images")
    plates = errors = to_check = 0
    started = time.perf_counter()

    def load(path: Path) -> tuple[Path, bytes, object]:
        data = path.read_bytes()
        try:
            return path, data, decode_any(data, settings.limits)
        except PlateMaskError as exc:
            return path, data, exc

    with ThreadPoolExecutor(max_workers=2) as pool:
        for path, data, image in pool.map(load, files):
            if isinstance(image, PlateMaskError):
                errors += 1
                progress.note(f"{path}: {image.describe()}")
            else:
                # A folder has no first photos: only what the masks themselves call for a look.
                found = find_masks(
                    image,
                    detector,
                    second_look,
                    padding=render.padding,
                    checks=settings.checks,
                    review_conf=options.review_conf,
                )
                plates += len(found.plates)
                if found.review:
                    to_check += 1
                    progress.note(f"{path}: to check: {', '.join(found.review)}")
                out = add_banner(mask_plates(image, found.plates, render), render)
                target = args.out_dir / path.relative_to(args.in_dir)
                atomic_write(target, encode_like(path.suffix, out, render.jpeg_quality, sha256(data), data))
            progress.step(f"{plates} plates")
    elapsed = time.perf_counter() - started
    progress.finish()
    done = len(files) - errors
    print(
        f"{len(files)} images: {done} masked, {plates} plates, {to_check} to check, {errors} errors, "
        f"{elapsed:.1f} s ({elapsed / len(files):.2f} s/image) → {args.out_dir}"
    )
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
