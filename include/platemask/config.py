"""Settings, read from environment variables (the names of the customer's original script).

Everything configurable lives here, so one table (``VARIABLES``) documents every variable the
code reads: the docs' configuration reference (docs/configuration.md) is generated from it, and
``.env.example`` and a test are checked against it.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from platemask.errors import ConfigError

__all__ = [
    "MASK_STYLES",
    "SECOND_LOOK_MODES",
    "VARIABLES",
    "Cutover",
    "DetectOptions",
    "Limits",
    "MaskChecks",
    "RenderOptions",
    "SecondLookOptions",
    "Settings",
]

#: Every environment variable platemask reads, with its meaning and "(default …)". The table of
#: docs/configuration.md is generated from it when the site is built (scripts/config_reference.py).
VARIABLES: dict[str, str] = {
    "S3_MOUNT": "Root of the /upfile/... photo paths: a mounted folder, or s3://bucket/prefix for direct S3",
    "LOG_DIR": "Folder that holds tracking/processed_YYYYMMDD.json (default: $AIRFLOW_HOME/logs or ./logs)",
    "BACKUP_S3_BUCKET": "When set, backups are server-side S3 copies in this bucket instead of mount copies",
    "BACKUP_S3_PREFIX": "Name of the backup folder next to each photo (default .backup)",
    "BACKUP_S3_KEY_PREFIX": "S3 key prefix that S3_MOUNT corresponds to in BACKUP_S3_BUCKET (e.g. webroot)",
    "AWS_CONN_ID": "Airflow connection used for S3 calls (default aws_default; boto3 defaults without Airflow)",
    "CHATWORK_API_KEY": "Chatwork API token; with CHATWORK_ROOM_ID enables the daily summary",
    "CHATWORK_ROOM_ID": "Chatwork room that receives the summaries",
    "CHATWORK_API_URL": "Chatwork API base URL (default https://api.chatwork.com/v2)",
    "PLATE_MODEL": "Plate model: OpenVINO dir or .onnx (run directly), or .pt (ultralytics); built-in when unset",
    "PLATEMASK_TIMEZONE": "Site time zone that defines a calendar day (default Asia/Tokyo)",
    "PLATEMASK_CUTOVER": "off, untracked or YYYY-MM-DD: photos whose backup is their original (cut-over; default off)",
    "PLATEMASK_CONF": "Detection confidence threshold (default 0.35; lower hides more)",
    "PLATEMASK_FLIP": "Also search each photo mirrored left-right, keeping both passes' plates (default false)",
    "PLATEMASK_SECOND_LOOK": "mask, review or off: what to do with text the plate model may have missed (default mask)",
    "PLATEMASK_REVIEW_CONF": "Masks from detections below this confidence are listed for review (default 0.50)",
    "PLATEMASK_PADDING": "Mask padding around a plate box up to 32 px tall, fraction of its size (default 0.25)",
    "PLATEMASK_MASK_STYLE": "fill, blur, pixelate or logo (default fill)",
    "PLATEMASK_MASK_COLOR": "Fill colour as #RRGGBB (default #2b2b2b)",
    "PLATEMASK_LOGO": "Image warped onto plates by the logo style (default: built-in logo)",
    "PLATEMASK_BANNER": "PNG with alpha drawn on every output (default: built-in banner)",
    "PLATEMASK_BANNER_POSITION": "top-left, top-right, bottom-left or bottom-right (default bottom-right)",
    "PLATEMASK_BANNER_SCALE": "Banner width as a fraction of the photo width (default 0.30)",
    "PLATEMASK_JPEG_QUALITY": "JPEG quality of written photos, 50-100 (default 92)",
    "PLATEMASK_MAX_PIXELS": "Largest photo accepted, in pixels (default 40000000)",
    "PLATEMASK_MAX_BYTES": "Largest photo file accepted, in bytes (default 52428800)",
    "PLATEMASK_CARS_PER_TASK": "Cars handled by one mapped task (default 1: one task per car)",
    "PLATEMASK_CAR_TASKS": "Car tasks of one DAG that may run at once, all workers together (default 4)",
    "PLATEMASK_CAR_TIMEOUT": "Minutes a car task may run per car before it is killed and retried (default 15)",
    "PLATEMASK_DAY_TIMEOUT": "Minutes a daily run may take before it is failed and the next day starts (default 1200)",
    "PLATEMASK_TODAY_EVERY": "Minutes between same-day runs masking today's new uploads (default 15; 0: off)",
    "PLATEMASK_MODEL_CACHE": "Folder where compiled models are kept for later task processes (default: temp)",
    "PLATEMASK_INFERENCE_THREADS": "Threads per model inference, unpinned (default 1; 0: OpenVINO decides)",
    "PLATEMASK_PRELOAD": "Airflow workers import the photo libraries once for all car tasks they fork (default true)",
    "YOLO_CONFIG_DIR": "Writable folder for ultralytics settings (default: a platemask folder in the temp dir)",
    "PLATEMASK_TRACKING_COMPRESS_AFTER_DAYS": "Gzip day tracking files older than this many days (default 0: never)",
    "PLATEMASK_TRACKING_DELETE_AFTER_DAYS": "Delete day tracking files older than this many days (default 0: never)",
}

#: The one home of each default that several modules need.
DEFAULT_TIMEZONE = "Asia/Tokyo"
BACKUP_DIR = ".backup"  # next to each photo (SPEC section 3)
DETECT_DIR = ".detect"
DEFAULT_CHATWORK_API_URL = "https://api.chatwork.com/v2"

_POSITIONS = ("top-left", "top-right", "bottom-left", "bottom-right")
MASK_STYLES = ("fill", "blur", "pixelate", "logo")
SECOND_LOOK_MODES = ("mask", "review", "off")
ASSETS = Path(__file__).parent / "assets"


def check_mask_style(style: str, setting: str = "PLATEMASK_MASK_STYLE") -> str:
    """``style`` if it is one of ``MASK_STYLES``; else a :class:`ConfigError` naming ``setting``."""
    if style not in MASK_STYLES:
        raise ConfigError(f"{setting} must be one of {', '.join(MASK_STYLES)}, not {style!r}")
    return style


@dataclass(frozen=True)
class DetectOptions:
    """How plates are found. Defaults favour hiding too much over missing a plate."""

    model: str | None = None
    conf: float = 0.35  # tuned for the built-in INT8 model (docs/model-card.md)
    # A mirrored second pass adds almost nothing on real photos the model has not seen, for twice
    # the model time (docs/benchmarks.md): off unless asked for.
    flip: bool = False
    iou: float = 0.5
    imgsz: int = 640
    max_det: int = 50
    #: Trace each plate's outline (the segmentation masks): only the logo style uses it, and the
    #: mask prototypes cost a quarter of the model's time (``Settings`` sets it from the style).
    outlines: bool = False


@dataclass(frozen=True)
class SecondLookOptions:
    """The second look at text the plate model left visible (platemask.second_look)."""

    #: ``mask``: hide unconfirmed plate-like text (fail-closed); ``review``: list it only; ``off``.
    mode: str = "mask"
    text_side: int = 640  # long side of the photo as the text detector sees it
    text_score: float = 0.5  # PaddleOCR's box threshold: mean character probability of a region
    # What a plate's line of characters looks like, in photo pixels.
    min_text_height: float = 5.0
    min_aspect: float = 1.0
    max_aspect: float = 8.0
    max_text_width: float = 0.4  # of the photo: longer text is a sign or a banner
    max_candidates: int = 8  # two closer looks at most per photo
    context: float = 8.0  # crop side / text width: the plate and some car around its characters
    min_crop: float = 48.0  # never enlarge a crop more than 320 / 48 ≈ 7×
    weak_conf: float = 0.02  # a closer-look plate at least this sure keeps a candidate unconfirmed
    max_plate_share: float = 0.5  # of a closer look's crop side: a larger box is no plate
    read_conf: float = 0.7  # the recogniser must be this sure of plate-like characters
    #: A mask from a detection below this confidence is listed for review (``low_confidence``).
    review_conf: float = 0.50

    def __post_init__(self) -> None:
        if self.mode not in SECOND_LOOK_MODES:
            raise ConfigError(f"PLATEMASK_SECOND_LOOK must be one of {', '.join(SECOND_LOOK_MODES)}, not {self.mode!r}")


@dataclass(frozen=True)
class MaskChecks:
    """What a box must show before it is masked (platemask.masking).

    A small box costs a photo little if it is wrong; a large one can deface it, so a large box is
    masked only when at least ``votes`` of three independent signs say plate: the model is sure
    of it, characters that read like a plate's span its width, and a look at its own crop finds
    it again. Characters that do not read like a plate's (a Japanese plate's kana, blur, but also
    signs) count as that sign only with a sure look again (``relook_sure``).
    """

    large: float = 0.008  # of the photo's area: a box from this size on must be confirmed
    sure: float = 0.70  # the model's confidence that counts as a vote
    text_share: float = 0.5  # a line of characters read like a plate's spans this share of its width: a vote
    relook_conf: float = 0.5  # the box found again, this sure, in a crop of its own: a vote
    relook_sure: float = 0.7  # ... this sure: unread characters across the box are a vote too
    words_share: float = 0.8  # a line read as words (no digit) spans this share of the box: a sign, never masked
    relook_context: float = 2.5  # that crop's side / the box's width (or twice its height)
    votes: int = 2
    #: Look at the whole photo again at half the scale where characters of a plate this large
    #: (share of the photo; a plate about a quarter of the photo wide) lie outside every box: plates
    #: too large for the model at full scale (close-ups) are found there, and checked like any other.
    zoom_out: bool = True
    zoom_text: float = 0.03
    #: A mask this large (share of the photo, padding included) lists the photo for review.
    review_area: float = 0.05


@dataclass(frozen=True)
class RenderOptions:
    """How masks and the banner are drawn and how photos are encoded."""

    style: str = "fill"
    padding: float = 0.25  # mask boxes are often a little small or offset: 25 % hides more than 10 %
    color: tuple[int, int, int] = (43, 43, 43)  # BGR
    logo: Path = ASSETS / "logo.png"
    banner: Path | None = ASSETS / "banner.png"
    banner_position: str = "bottom-right"
    banner_scale: float = 0.30
    jpeg_quality: int = 92

    @property
    def uses_outlines(self) -> bool:
        """Whether this style needs each plate's outline (the logo is warped onto the plate's shape)."""
        return self.style == "logo"

    def __post_init__(self) -> None:
        check_mask_style(self.style)
        if self.banner_position not in _POSITIONS:
            raise ConfigError(
                f"PLATEMASK_BANNER_POSITION must be one of {', '.join(_POSITIONS)}, not {self.banner_position!r}"
            )
        if not 0 <= self.padding <= 1:
            raise ConfigError(f"PLATEMASK_PADDING must be between 0 and 1, not {self.padding}")
        if not 0 < self.banner_scale <= 1:
            raise ConfigError(f"PLATEMASK_BANNER_SCALE must be in (0, 1], not {self.banner_scale}")
        if not 50 <= self.jpeg_quality <= 100:
            raise ConfigError(f"PLATEMASK_JPEG_QUALITY must be between 50 and 100, not {self.jpeg_quality}")


@dataclass(frozen=True)
class Cutover:
    """``PLATEMASK_CUTOVER``: taking over from the script the site ran before platemask.

    That script wrote the same ``.backup/`` copies and put its banner on each first photo, so a
    photo that differs from its backup may be its output rather than a staff re-upload. For the
    photos this selects, spec rule 1 applies as written: the backup is the original, and the photo
    is put back from it before processing (platemask.backup).

    ``untracked``: photos platemask has never verified (their tracking record has no sha256).
    A date, the day platemask took over: photos last uploaded before it (the row's
    ``updated_at``), which only the old script can have changed since; a photo re-uploaded later
    is a new upload as usual. The photo it replaces is kept under ``.backup/.history/`` either way.
    """

    untracked: bool = False
    before: dt.date | None = None

    @classmethod
    def parse(cls, text: str) -> Cutover:
        """``off`` (or empty), ``untracked``, or a date ``YYYY-MM-DD``; anything else names the variable."""
        value = text.strip().lower()
        if value in ("", "off"):
            return cls()
        if value == "untracked":
            return cls(untracked=True)
        try:
            return cls(before=dt.date.fromisoformat(value))
        except ValueError:
            raise ConfigError(f"PLATEMASK_CUTOVER must be off, untracked or a date YYYY-MM-DD, not {text!r}") from None

    def backup_is_original(self, uploaded_on: dt.date, verified_before: bool) -> bool:
        """Whether a photo last uploaded on ``uploaded_on`` is put back from its backup when it differs."""
        return (self.untracked and not verified_before) or (self.before is not None and uploaded_on < self.before)


@dataclass(frozen=True)
class Limits:
    """What counts as a usable photo; anything outside is an ``invalid_image`` error."""

    max_pixels: int = 40_000_000
    max_bytes: int = 50 * 1024 * 1024
    min_side: int = 32


@dataclass(frozen=True)
class Settings:
    """Everything a run needs to know, usually built with :meth:`from_env`."""

    s3_mount: str
    log_dir: str
    backup_dir_name: str = BACKUP_DIR
    detect_dir_name: str = DETECT_DIR
    backup_s3_bucket: str | None = None
    backup_s3_key_prefix: str = ""
    aws_conn_id: str | None = None
    chatwork_api_key: str | None = field(default=None, repr=False)
    chatwork_room_id: str | None = None
    chatwork_api_url: str = DEFAULT_CHATWORK_API_URL
    timezone: str = DEFAULT_TIMEZONE
    cars_per_task: int = 1
    cutover: Cutover = Cutover()
    detect: DetectOptions = DetectOptions()
    second_look: SecondLookOptions = SecondLookOptions()
    checks: MaskChecks = MaskChecks()
    render: RenderOptions = RenderOptions()
    limits: Limits = Limits()
    #: Tracking files of days older than this many days are gzipped / deleted (0: never; platemask.retention).
    tracking_compress_after_days: int = 0
    tracking_delete_after_days: int = 0

    def __post_init__(self) -> None:
        # The detector traces outlines exactly when the mask style draws on them, however the
        # style was chosen (environment, operator argument, command line).
        if self.detect.outlines != self.render.uses_outlines:
            object.__setattr__(self, "detect", replace(self.detect, outlines=self.render.uses_outlines))

    def with_overrides(self, **changes: Any) -> Settings:
        """Return a copy with the given non-None fields replaced."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from environment variables (see ``VARIABLES``)."""
        source = os.environ if environ is None else environ
        env = _Env(source)
        default_logs = str(Path(env.get("AIRFLOW_HOME") or ".") / "logs")
        banner = env.get("PLATEMASK_BANNER")
        return cls(
            s3_mount=env.get("S3_MOUNT") or "",
            log_dir=env.get("LOG_DIR") or default_logs,
            backup_dir_name=env.get("BACKUP_S3_PREFIX") or BACKUP_DIR,
            backup_s3_bucket=env.get("BACKUP_S3_BUCKET") or None,
            backup_s3_key_prefix=(env.get("BACKUP_S3_KEY_PREFIX") or "").strip("/"),
            aws_conn_id=env.get("AWS_CONN_ID") or None,
            **_chatwork_fields(env),
            timezone=site_timezone(source),
            cars_per_task=env.integer("PLATEMASK_CARS_PER_TASK", 1, minimum=1),
            cutover=Cutover.parse(env.get("PLATEMASK_CUTOVER") or ""),
            detect=DetectOptions(
                model=env.get("PLATE_MODEL") or None,
                conf=env.number("PLATEMASK_CONF", DetectOptions.conf, minimum=0.01, maximum=0.99),
                flip=env.boolean("PLATEMASK_FLIP", DetectOptions.flip),
            ),
            second_look=SecondLookOptions(
                mode=(env.get("PLATEMASK_SECOND_LOOK") or "mask").lower(),
                review_conf=env.number("PLATEMASK_REVIEW_CONF", SecondLookOptions.review_conf, minimum=0, maximum=1),
            ),
            render=RenderOptions(
                style=env.get("PLATEMASK_MASK_STYLE") or "fill",
                padding=env.number("PLATEMASK_PADDING", RenderOptions.padding),
                color=_bgr(env.get("PLATEMASK_MASK_COLOR") or "#2b2b2b"),
                logo=Path(env.get("PLATEMASK_LOGO") or ASSETS / "logo.png"),
                banner=Path(banner) if banner else ASSETS / "banner.png",
                banner_position=env.get("PLATEMASK_BANNER_POSITION") or "bottom-right",
                banner_scale=env.number("PLATEMASK_BANNER_SCALE", 0.30),
                jpeg_quality=env.integer("PLATEMASK_JPEG_QUALITY", 92),
            ),
            limits=Limits(
                max_pixels=env.integer("PLATEMASK_MAX_PIXELS", Limits.max_pixels, minimum=1),
                max_bytes=env.integer("PLATEMASK_MAX_BYTES", Limits.max_bytes, minimum=1),
            ),
            tracking_compress_after_days=env.integer("PLATEMASK_TRACKING_COMPRESS_AFTER_DAYS", 0, minimum=0),
            tracking_delete_after_days=env.integer("PLATEMASK_TRACKING_DELETE_AFTER_DAYS", 0, minimum=0),
        )

    @classmethod
    def chatwork_only(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Settings with only the ``CHATWORK_*`` variables read: what a failure alert needs, so
        that an invalid ``PLATEMASK_*`` value does not silence the alert that reports it."""
        return cls(s3_mount="", log_dir="", **_chatwork_fields(_Env(os.environ if environ is None else environ)))

    def require_storage(self) -> None:
        """Fail early, naming the variable, when no photo root is configured."""
        if not self.s3_mount:
            raise ConfigError("S3_MOUNT is not set: it must name the root of the /upfile/... photo paths")


def site_timezone(environ: Mapping[str, str] | None = None) -> str:
    """``PLATEMASK_TIMEZONE``: the time zone whose calendar days are the site's days (DAGs read it at parse time)."""
    return _Env(os.environ if environ is None else environ).get("PLATEMASK_TIMEZONE") or DEFAULT_TIMEZONE


def car_tasks(environ: Mapping[str, str] | None = None) -> int:
    """``PLATEMASK_CAR_TASKS``: how many car tasks may run at once, all workers together.

    The daily DAG reads it when it is parsed (``max_active_tis_per_dag`` of ``mask_car``): a
    bound that needs nothing created in Airflow first, unlike a pool, in which tasks of a
    missing pool wait forever without a word.
    """
    return _Env(os.environ if environ is None else environ).integer("PLATEMASK_CAR_TASKS", 4, minimum=1)


#: A car of 40 phone photos (4000×3000) takes about 12 CPU-s (0.3 per photo, `platemask mask-dir`),
#: about 40 s on a worker whose cores are all busy: 15 minutes is 20 times that, room for slow
#: storage and its retries, and still bounds a hung car to a quarter of an hour.
DEFAULT_CAR_TIMEOUT_MIN = 15.0
#: A 150,000-photo day is about 10 core-hours (docs/operations/capacity.md): sized for a night, a run
#: still going after 20 hours is stuck, and the next day's run (max_active_runs=1) waits on it.
DEFAULT_DAY_TIMEOUT_MIN = 1200.0
#: A restore (``execution_timeout`` of its task): it copies backups back 8 at a time, and a daily
#: run of the day waits for it (platemask.tracking, ``DayTracking.claim``), so it is bounded too.
RESTORE_TIMEOUT = dt.timedelta(hours=3)


def car_timeout(environ: Mapping[str, str] | None = None) -> dt.timedelta:
    """``execution_timeout`` of a car task: ``PLATEMASK_CAR_TIMEOUT`` minutes per car it handles.

    A timed-out task is killed and retried like any failure (the DAG reads this when parsed).
    """
    env = _Env(os.environ if environ is None else environ)
    minutes = env.number("PLATEMASK_CAR_TIMEOUT", DEFAULT_CAR_TIMEOUT_MIN, minimum=0.1)
    return dt.timedelta(minutes=minutes * env.integer("PLATEMASK_CARS_PER_TASK", 1, minimum=1))


def day_timeout(environ: Mapping[str, str] | None = None) -> dt.timedelta:
    """``dagrun_timeout`` of the daily run: ``PLATEMASK_DAY_TIMEOUT`` minutes."""
    env = _Env(os.environ if environ is None else environ)
    return dt.timedelta(minutes=env.number("PLATEMASK_DAY_TIMEOUT", DEFAULT_DAY_TIMEOUT_MIN, minimum=1))


#: Same-day runs (``plate_masking_today``): often enough that a photo is masked minutes after its
#: upload, as the site's old cron script did, rarely enough that a run finds a few cars' work.
DEFAULT_TODAY_EVERY_MIN = 15


def today_every(environ: Mapping[str, str] | None = None) -> dt.timedelta | None:
    """``PLATEMASK_TODAY_EVERY``: the same-day DAG's interval, or None (0: it never runs by itself)."""
    env = _Env(os.environ if environ is None else environ)
    minutes = env.number("PLATEMASK_TODAY_EVERY", DEFAULT_TODAY_EVERY_MIN, minimum=0)
    return dt.timedelta(minutes=minutes) if minutes else None


def _chatwork_fields(env: _Env) -> dict[str, str | None]:
    return {
        "chatwork_api_key": env.get("CHATWORK_API_KEY") or None,
        "chatwork_room_id": env.get("CHATWORK_ROOM_ID") or None,
        "chatwork_api_url": (env.get("CHATWORK_API_URL") or DEFAULT_CHATWORK_API_URL).rstrip("/"),
    }


class _Env:
    """Typed reads of environment variables whose errors name the variable."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    def get(self, name: str) -> str | None:
        value = self._environ.get(name)
        return value.strip() if value is not None else None

    def number(self, name: str, default: float, *, minimum: float | None = None, maximum: float | None = None) -> float:
        raw = self.get(name)
        if not raw:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"{name} must be a number, not {raw!r}") from None
        if maximum is None and minimum is not None and value < minimum:
            raise ConfigError(f"{name} must be at least {minimum}, not {value}")
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            raise ConfigError(f"{name} must be between {minimum} and {maximum}, not {value}")
        return value

    def boolean(self, name: str, default: bool) -> bool:
        raw = (self.get(name) or "").lower()
        if not raw:
            return default
        if raw in ("1", "true", "yes", "on"):
            return True
        if raw in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name} must be true or false, not {raw!r}")

    def integer(self, name: str, default: int, *, minimum: int | None = None) -> int:
        raw = self.get(name)
        if not raw:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"{name} must be an integer, not {raw!r}") from None
        if minimum is not None and value < minimum:
            raise ConfigError(f"{name} must be at least {minimum}, not {value}")
        return value


def _bgr(hex_color: str) -> tuple[int, int, int]:
    """Parse ``#RRGGBB`` into OpenCV's BGR order."""
    text = hex_color.lstrip("#")
    if len(text) != 6:
        raise ConfigError(f"PLATEMASK_MASK_COLOR must look like #RRGGBB, not {hex_color!r}")
    try:
        r, g, b = (int(text[i : i + 2], 16) for i in (0, 2, 4))
    except ValueError:
        raise ConfigError(f"PLATEMASK_MASK_COLOR must look like #RRGGBB, not {hex_color!r}") from None
    return b, g, r
