"""Photos to check in the Airflow UI: a FastAPI app the API server mounts at ``/platemask``.

Pages list a day's flagged photos and a car's photos, show one photo's masks on its original
beside the published copy, and save a person's fix through ``platemask.corrections``. Every
route needs a logged-in Airflow user, checked by Airflow's own auth manager
(``requires_access_dag``): reading needs read access to ``plate_masking_daily``, saving needs
edit access. A photo is found by day and file id in the day's tracking file only.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from airflow.api_fastapi.common.db.common import SessionDep
from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_dag
from airflow.models import DagRun
from annotated_types import Len
from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response, status
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader
from pydantic import BaseModel, Field
from sqlalchemy import select

from platemask.config import Settings
from platemask.errors import (
    CorrectionConflictError,
    DayBusyError,
    InvalidCorrectionError,
    MissingFileError,
    PlateMaskError,
)
from platemask.tracking import DayTracking
from platemask_airflow.storage import day_tracking, open_storage

if TYPE_CHECKING:
    from types import ModuleType

    from platemask.corrections import Fix

__all__ = ["DAILY_DAG_ID", "app"]

DAILY_DAG_ID = "plate_masking_daily"
_TEMPLATES = Jinja2Templates(
    env=Environment(loader=FileSystemLoader(Path(__file__).with_name("templates")), autoescape=True)
)
# Photos are as private as the backups: browsers and proxies keep no copy.
_PRIVATE = {"Cache-Control": "no-store"}

_can_read = Depends(requires_access_dag(method="GET", param_dag_id=DAILY_DAG_ID))
_can_edit = Depends(requires_access_dag(method="PUT", param_dag_id=DAILY_DAG_ID))

app = FastAPI(title="platemask: photos to check", docs_url=None, redoc_url=None, openapi_url=None)


def get_settings() -> Settings:
    """The same settings the tasks read (S3_MOUNT, LOG_DIR, ...), from the API server's environment."""
    return Settings.from_env()


SettingsDep = Annotated[Settings, Depends(get_settings)]
Box = Annotated[list[float], Len(4, 4)]
Corners = Annotated[list[Annotated[list[float], Len(2, 2)]], Len(4, 4)]


class FixBody(BaseModel):
    """A person's fix as the photo page sends it."""

    add: Annotated[list[Box | Corners], Len(0, 50)] = Field(default_factory=list)
    remove: Annotated[list[int], Len(0, 200)] = Field(default_factory=list)
    approve: bool = False
    revision: int = 0


def _photo_code() -> ModuleType:
    """``platemask.photo_check``, imported on first use. Airflow loads this plugin in all its
    processes, task processes and the DAG processor included; none of them needs the photo code
    (OpenCV, the masking pipeline) that only these pages use."""
    from platemask import photo_check

    return photo_check


def _processed(settings: Settings, day: dt.date) -> dict[str, Any]:
    return day_tracking(settings, day).view().get("processed", {})


def _record(settings: Settings, day: dt.date, file_id: str) -> dict[str, Any]:
    try:
        return dict(_photo_code().find_record(_processed(settings, day), file_id))
    except KeyError:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no photo {file_id} on {day}") from None


def _page(request: Request, name: str, **context: Any) -> HTMLResponse:
    base = request.scope.get("root_path", "")
    return _TEMPLATES.TemplateResponse(request, name, {"base": base, **context}, headers=_PRIVATE)


@app.get("/photos", dependencies=[_can_read], response_class=HTMLResponse)
def photos_to_check(
    request: Request,
    settings: SettingsDep,
    session: SessionDep,
    day: dt.date | None = None,
    dag_id: str | None = None,
    run_id: str | None = None,
) -> HTMLResponse:
    """The day's photos to check; the day comes from ``day``, else the run, else the latest run."""
    if dag_id and dag_id != DAILY_DAG_ID:
        return _page(request, "other_dag.html", dag_id=dag_id, daily=DAILY_DAG_ID)
    day = day or _run_day(session, settings, run_id)
    records = _photo_code().to_check(_processed(settings, day))
    return _page(
        request,
        "photos.html",
        day=day,
        groups=_photo_code().group_by_car(records),
        count=len(records),
        reasons=_photo_code().REASONS,
    )


@app.get("/photos/{day}/car", dependencies=[_can_read])
def open_car(request: Request, day: dt.date, car_id: Annotated[str, Query(max_length=64)]) -> RedirectResponse:
    """The "open car id" form's target: on to that car's page."""
    url = request.url_for("car", day=day.isoformat(), car_id=car_id.strip())
    return RedirectResponse(url, status.HTTP_303_SEE_OTHER)


@app.get("/photos/{day}/car/{car_id}", name="car", dependencies=[_can_read], response_class=HTMLResponse)
def car(request: Request, day: dt.date, car_id: str, settings: SettingsDep) -> HTMLResponse:
    """Every photo of one car on the day, flagged or not."""
    records = _photo_code().car_photos(_processed(settings, day), car_id)
    return _page(request, "car.html", day=day, car_id=car_id, records=records, reasons=_photo_code().REASONS)


@app.get("/photos/{day}/{file_id}", dependencies=[_can_read], response_class=HTMLResponse)
def photo(request: Request, day: dt.date, file_id: str, settings: SettingsDep, user: GetUserDep) -> HTMLResponse:
    """One photo: its masks on the original, the published copy, and the buttons to fix it."""
    view = _photo_code().photo_view(_record(settings, day, file_id))
    return _page(request, "photo.html", day=day, photo=view, user=user.get_name())


@app.get("/photos/{day}/{file_id}/original.jpg", dependencies=[_can_read])
def original(day: dt.date, file_id: str, settings: SettingsDep) -> Response:
    """The upload as it was (its backup), upright."""
    record = _record(settings, day, file_id)
    _store, backups = open_storage(settings)
    return _image(lambda: _photo_code().original_jpeg(record, settings, backups))


@app.get("/photos/{day}/{file_id}/published.jpg", dependencies=[_can_read])
def published(day: dt.date, file_id: str, settings: SettingsDep) -> Response:
    """The ``.detect/`` copy the site exports."""
    record = _record(settings, day, file_id)
    store, _backups = open_storage(settings)
    return _image(lambda: _photo_code().published_jpeg(record, settings, store))


@app.post("/photos/{day}/{file_id}", dependencies=[_can_edit])
def save(day: dt.date, file_id: str, body: FixBody, settings: SettingsDep, user: GetUserDep) -> dict[str, Any]:
    """Apply a fix as the logged-in user and answer the updated record."""
    if not _photo_code().FILE_ID.fullmatch(file_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no photo {file_id} on {day}")
    tracking = day_tracking(settings, day)
    from platemask.corrections import Fix

    fix = Fix(
        add=tuple(body.add),
        remove=tuple(body.remove),
        approve=body.approve,
        user=user.get_name(),
        revision=body.revision,
    )
    store, backups = open_storage(settings)
    return _saved(tracking, file_id, fix, settings, store, backups)


def _saved(tracking: DayTracking, file_id: str, fix: Fix, settings: Settings, store, backups) -> dict[str, Any]:
    from platemask.corrections import apply_fix

    try:
        return apply_fix(tracking, file_id, fix, settings=settings, store=store, backups=backups)
    except (CorrectionConflictError, DayBusyError) as exc:  # someone else's save, or a run of the day
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    except InvalidCorrectionError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    except KeyError:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no photo {file_id} on {tracking.day}") from None


def _image(read) -> Response:
    try:
        return Response(read(), media_type="image/jpeg", headers=_PRIVATE)
    except MissingFileError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, exc.describe()) from None
    except PlateMaskError as exc:
        raise HTTPException(status.HTTP_502_BAD_GATEWAY, exc.describe()) from None


def _run_day(session, settings: Settings, run_id: str | None) -> dt.date:
    """The day a run of the daily DAG processes (its ``date`` param, else its logical date); no
    run given: the latest run's day; no run at all: yesterday, the day the schedule does next."""
    from platemask.daily import target_day

    query = select(DagRun).where(DagRun.dag_id == DAILY_DAG_ID)
    query = query.where(DagRun.run_id == run_id) if run_id else query.order_by(DagRun.run_after.desc()).limit(1)
    run = session.scalars(query).first()
    if run is None and run_id:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no run {run_id} of {DAILY_DAG_ID}")
    if run is None:
        return target_day(None, None, settings.timezone) - dt.timedelta(days=1)
    return target_day((run.conf or {}).get("date"), run.logical_date or run.run_after, settings.timezone)
