"""The task of ``plate_masking_restore``: validated form values in, a restore report out."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from platemask.config import Settings
from platemask.paths import CAR_ID, parse_car_ids
from platemask.storage import Storage
from platemask.tracking import RESTORE_STATUSES
from platemask_airflow.chatwork import ChatworkHook
from platemask_airflow.storage import day_tracking, open_storage

__all__ = ["CAR_ID_PATTERN", "RESTORE_STATUSES", "run_restore"]

log = logging.getLogger(__name__)

#: One car id, or several separated by commas (what the trigger form's text field accepts).
CAR_ID_PATTERN = rf"^\s*{CAR_ID}(\s*,\s*{CAR_ID})*\s*$"
#: Problem lines kept in the XCom; the task log has them all.
_XCOM_PROBLEMS = 100


def run_restore(
    params: Mapping[str, Any], storage: tuple[Storage, Storage] | None = None, *, run_id: str | None = None
) -> dict[str, Any]:
    """Restore (or list, in a dry run) the selected originals and report per car.

    ``run_id`` makes a retried task a retry of the same restore: it records and posts nothing twice.
    """
    from platemask.restore import RestoreRequest, restore_and_report  # OpenCV stays out of DAG parsing

    settings = Settings.from_env()
    request = RestoreRequest(
        day=dt.date.fromisoformat(params["date"]),
        status=params["status"],
        car_ids=parse_car_ids(params.get("car_id")),
        dry_run=bool(params.get("dry_run", True)),
        remove_detect=bool(params.get("remove_detect", False)),
    )
    store, backups = storage or open_storage(settings)
    report = restore_and_report(
        request,
        day_tracking(settings, request.day),
        settings=settings,
        store=store,
        backups=backups,
        client=ChatworkHook(settings=settings).get_conn(),
        run_id=run_id,
    )
    log.info("Restore report:\n%s", report.text())
    result = report.as_dict()
    result["problems"] = result["problems"][:_XCOM_PROBLEMS]
    if report.failed and not request.dry_run:
        counts = report.counts()
        raise AirflowFailException(
            f"restore incomplete: {counts['missing_backup']} missing backup(s), {counts['error']} error(s); "
            f"{counts['restored']} restored"
        )
    return result
