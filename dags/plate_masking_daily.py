"""
### Plate masking, daily

Hides the licence plates in the photos uploaded on one site-local day.

1. **plan_uploads**: reads the day's uploads from `upload_db` (PostgresHook) and writes each
   car's work into the day's tracking file.
2. **mask_car**, one task per car, labelled with its car id: backup → plate detection →
   mask + banner → verify → tracking.
3. **finish_day**: marks complete cars `done` and posts the Chatwork summary.

* **Schedule**: the run for day D starts when D ends (Asia/Tokyo by default) and processes D.
  Switching the DAG on also creates the run of the last finished day, which goes before a
  manual run.
* **Backfill** (Trigger → Backfill): the From/To pickers are in the UI's time zone (user menu →
  Timezone, your browser's by default). Set it to Asia/Tokyo first, or the days shift by one.
  CLI: `airflow backfill create --dag-id plate_masking_daily --from-date ... --to-date ...`.
* **Manual run**: the `date` field picks the day (empty: the run's logical date, else today);
  `force` reprocesses photos that are already done. Otherwise only new, changed or unfinished
  photos are processed, so running a day twice is safe and cheap.
* **A red car**: fix the cause, then *Clear* that `mask_car` task; keep "Downstream" selected
  (it is by default) so `finish_day` updates the day's tracking file and summary.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING

import pendulum
from airflow.sdk import CronDataIntervalTimetable, Param, TaskInstance, TriggerRule, dag, task

from platemask.config import day_timeout, site_timezone
from platemask_airflow.car_tasks import mask_each_car
from platemask_airflow.errors import FailedPhotos, NothingToFinish
from platemask_airflow.notifiers import RUN_TIMEOUT_TEXT, ChatworkNotifier

if TYPE_CHECKING:  # the task modules load at run time only: parsing stays free of model code
    from platemask_airflow.daily import DayResult

SITE_TIMEZONE = site_timezone()  # PLATEMASK_TIMEZONE: whose calendar days are the site's days
UPLOADS_SQL = Path(__file__).parents[1] / "include" / "sql" / "day_uploads.sql"
# Nothing hangs forever: a hung car task is killed and retried (mask_each_car), a stuck run makes
# way for the next day.
DAY_TIMEOUT = day_timeout()  # PLATEMASK_DAY_TIMEOUT minutes
# plan_uploads and finish_day take about 10 s each on a 150,000-photo day (make bench-scale).
DAY_TASK_TIMEOUT = dt.timedelta(minutes=30)


@dag(
    dag_id=Path(__file__).stem,
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone=SITE_TIMEZONE),
    start_date=pendulum.datetime(2026, 1, 1, tz=SITE_TIMEZONE),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=DAY_TIMEOUT,
    on_failure_callback=ChatworkNotifier(text=RUN_TIMEOUT_TEXT),
    default_args={
        "retries": 3,
        "retry_delay": dt.timedelta(seconds=30),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": dt.timedelta(minutes=10),
    },
    params={
        "date": Param(
            None,
            type=["null", "string"],
            format="date",
            title="Day to process",
            description="Site-local upload day as YYYY-MM-DD (e.g. 2026-02-03). Empty: the logical date, or today.",
        ),
        "force": Param(
            False,
            type="boolean",
            title="Reprocess finished photos",
            description="Process every photo of the day again, including those already done.",
        ),
    },
    tags=["platemask"],
    doc_md=__doc__,
)
def plate_masking_daily() -> None:
    @task(
        # The return value is the mapped input; Airflow refuses to map over a named output
        # (`expand(car_ids=plan["batches"])`: "cannot map over XCom with custom key"), so the
        # run's constants are pushed under their own keys instead.
        multiple_outputs=False,
        execution_timeout=DAY_TASK_TIMEOUT,
        on_failure_callback=ChatworkNotifier.task_failed("the day's uploads could not be planned"),
    )
    def plan_uploads(params: dict, ti: TaskInstance, logical_date: dt.datetime | None = None) -> list[list[str]]:
        """Read the day's uploads, write each car's work into the tracking file, return the car batches.

        Its other outputs, ``day`` and ``counts``, are constants of the run (XCom keys of the same
        names): Airflow maps over a task's return value only.
        """
        from platemask_airflow.daily import plan

        day_plan = plan(UPLOADS_SQL, params["date"], logical_date, force=params["force"], run_id=ti.run_id)
        for key, value in day_plan.outputs().items():
            ti.xcom_push(key=key, value=value)
        return day_plan.batches

    @task(
        multiple_outputs=True,  # each key of DayResult is an XCom of its own, e.g. "failed"
        trigger_rule=TriggerRule.ALL_DONE,
        execution_timeout=DAY_TASK_TIMEOUT,
        # Failed photos turn it red on purpose, after the summary that lists them, and a failed plan
        # has its own alert: no second one.
        on_failure_callback=ChatworkNotifier.task_failed(
            "the day was not finished", unless=(FailedPhotos, NothingToFinish)
        ),
    )
    def finish_day(ti: TaskInstance) -> DayResult:
        """Mark complete cars done, send the Chatwork summary, fail if any photo failed."""
        from platemask_airflow.daily import finish

        # Pulled, not passed: when the plan failed there is no XCom and finish says so plainly. An
        # argument plan["counts"] would fail before this code runs (XComNotFound: the key is not the
        # return value of a multiple_outputs task), be alerted a second time and retried.
        return finish(ti.xcom_pull(task_ids="plan_uploads", key="counts"), run_id=ti.run_id)

    mask_each_car(plan_uploads()) >> finish_day()


plate_masking_daily()
