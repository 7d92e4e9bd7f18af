"""
### Plate masking, same day

Masks today's new uploads minutes after staff upload them, so that `.detect/` copies and the
first photo's banner exist during the day, as they did with the site's old cron script.

1. **plan_today**: reads today's (site-local) uploads that are new or changed since the last
   same-day run from `upload_db`, and writes each car's work into the day's tracking file.
2. **mask_car**, one task per car, labelled with its car id: the daily DAG's car task.
3. **finish_today**: merges the cars' work into the day's tracking file. Cars are NOT marked
   `done` and no summary is sent; it turns red (one Chatwork alert) only if a photo failed.

* **How it fits with `plate_masking_daily`**: the daily run stays the day's final word. After
  midnight it processes whatever the same-day runs left (failed photos, late uploads), marks
  the cars `done` and sends the day's one Chatwork summary, whose counts are the whole day's:
  photos masked by same-day runs count as processed there, not as skipped.
* **Never at once**: a run claims the day from planning to finishing. A same-day run that
  finds the day held (by the daily run or a restore) skips quietly; the daily run waits for a
  same-day run still at work (the 23:45 run at midnight) before it plans.
* **Schedule**: every `PLATEMASK_TODAY_EVERY` minutes (default 15). A run that finds nothing
  new takes seconds: it asks the database only for rows updated since its last run.
* **Switching it off**: pause the DAG in the UI (toggle), or set `PLATEMASK_TODAY_EVERY=0`:
  the DAG stays listed and can still be triggered by hand, but never runs by itself. The daily
  run then does all the work after midnight, as before.
* **Manual run**: the `date` field picks the day (empty: today).
* **A red car**: nothing to do in a hurry. The daily run retries failed photos after midnight;
  *Clear* the `mask_car` task (with Downstream) to retry it now.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING

import pendulum
from airflow.sdk import DeltaTriggerTimetable, Param, TaskInstance, TriggerRule, dag, task

from platemask.config import site_timezone, today_every
from platemask_airflow.car_tasks import mask_each_car
from platemask_airflow.errors import FailedPhotos
from platemask_airflow.notifiers import ChatworkNotifier

if TYPE_CHECKING:  # the task modules load at run time only: parsing stays free of model code
    from platemask_airflow.today import TodayResult

SITE_TIMEZONE = site_timezone()  # PLATEMASK_TIMEZONE: whose calendar day is today
# The daily run's query, given updated_since: only the rows changed since the last same-day run.
UPLOADS_SQL = Path(__file__).parents[1] / "include" / "sql" / "day_uploads.sql"
EVERY = today_every()  # PLATEMASK_TODAY_EVERY minutes; None (0): never by itself
TASK_TIMEOUT = dt.timedelta(minutes=30)
# Hours of uploads at once (the site back after an outage) still fit; a stuck run makes way.
RUN_TIMEOUT = dt.timedelta(hours=3)


@dag(
    dag_id=Path(__file__).stem,
    schedule=DeltaTriggerTimetable(EVERY) if EVERY else None,
    start_date=pendulum.datetime(2026, 1, 1, tz=SITE_TIMEZONE),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=RUN_TIMEOUT,
    default_args={"retries": 2, "retry_delay": dt.timedelta(seconds=30)},
    params={
        "date": Param(
            None,
            type=["null", "string"],
            format="date",
            title="Day to process",
            description="Site-local upload day as YYYY-MM-DD. Empty: today.",
        ),
    },
    tags=["platemask", "same-day"],
    doc_md=__doc__,
)
def plate_masking_today() -> None:
    @task(
        multiple_outputs=False,  # the batches are the mapped input; day and counts are XCom keys
        execution_timeout=TASK_TIMEOUT,
        on_failure_callback=ChatworkNotifier.task_failed("today's new uploads could not be planned"),
    )
    def plan_today(params: dict, ti: TaskInstance) -> list[list[str]]:
        """Claim today, plan its new and changed photos, return the car batches (none: nothing new)."""
        from platemask_airflow.today import plan

        day_plan = plan(UPLOADS_SQL, params["date"], run_id=ti.run_id)
        for key, value in day_plan.outputs().items():
            ti.xcom_push(key=key, value=value)
        return day_plan.batches

    @task(
        trigger_rule=TriggerRule.ALL_DONE,
        execution_timeout=TASK_TIMEOUT,
        # A failed car task has alerted already: failed photos turn this red without a second one.
        on_failure_callback=ChatworkNotifier.task_failed("today's work was not merged", unless=(FailedPhotos,)),
    )
    def finish_today(ti: TaskInstance) -> TodayResult:
        """Merge the cars' work into the day file (no summary), fail if any photo failed."""
        from platemask_airflow.today import finish

        return finish(ti.xcom_pull(task_ids="plan_today", key="counts"), run_id=ti.run_id)

    plan = plan_today()
    mask_each_car(plan) >> finish_today()


plate_masking_today()
