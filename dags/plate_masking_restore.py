"""
### Plate masking, restore

Puts original photos back from their `.backup/` copies, chosen from one day's tracking file.

1. **restore_originals** reads the day's tracking file and selects the photos by status and car.
2. Each selected backup is copied over its original (atomically) and checked byte for byte.
3. The report goes to the task log, XCom and Chatwork, one line per car; a car id that matches
   no photo is named ("no matching photos for car …").

`dry_run` is on by default: the first trigger only reports what would be restored. Backups are
never modified. Restored records get a `restored` entry in their history; the daily run does
not process them again unless it is run with `force`. From the command line:
`airflow dags trigger plate_masking_restore --conf '{"date": "2026-02-03", "status": "done",
"car_id": "10418430", "dry_run": false}'`.
"""

from __future__ import annotations

from pathlib import Path

import pendulum
from airflow.sdk import Param, dag, task

from platemask.config import RESTORE_TIMEOUT, site_timezone
from platemask_airflow.notifiers import ChatworkNotifier
from platemask_airflow.restore import CAR_ID_PATTERN, RESTORE_STATUSES


@dag(
    dag_id=Path(__file__).stem,
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz=site_timezone()),
    catchup=False,
    default_args={"retries": 2},
    params={
        "date": Param(
            type="string",
            format="date",
            title="Day",
            description="The day whose tracking file lists the photos, as YYYY-MM-DD (e.g. 2026-02-03).",
        ),
        "status": Param(
            type="string",
            enum=list(RESTORE_STATUSES),
            title="Records with status",
            description="Restore the photos whose tracking status is this one (all: every photo of the day).",
        ),
        "car_id": Param(
            None,
            type=["null", "string", "array"],
            pattern=CAR_ID_PATTERN,
            items={"type": "string", "pattern": CAR_ID_PATTERN},
            title="Car ids",
            description=(
                "Only these cars. A car id is 5 to 64 letters, digits, '-' or '_', starting with a letter or "
                "digit (e.g. 10418430); several are separated by commas (10418430, 10418457). Empty: all cars."
            ),
        ),
        "dry_run": Param(
            True,
            type="boolean",
            title="Dry run",
            description="Only report what would be restored; change nothing.",
        ),
        "remove_detect": Param(
            False,
            type="boolean",
            title="Also remove masked copies",
            description="Delete the .detect/ copies of the restored photos.",
        ),
    },
    tags=["platemask"],
    doc_md=__doc__,
)
def plate_masking_restore() -> None:
    @task(
        multiple_outputs=False,
        execution_timeout=RESTORE_TIMEOUT,
        on_failure_callback=ChatworkNotifier.task_failed("originals were not all restored"),
    )
    def restore_originals(params: dict, run_id: str) -> dict:
        """Copy the selected backups over the originals and report per car."""
        from platemask_airflow.restore import run_restore

        return run_restore(params, run_id=run_id)

    restore_originals()


plate_masking_restore()
