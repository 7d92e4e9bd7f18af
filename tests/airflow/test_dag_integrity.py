"""Team policy for DAG files, checked the way the DAG processor loads them."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from airflow.dag_processing.dagbag import DagBag

from platemask_airflow.operators import PlateMaskOperator

DAGS = Path(__file__).parents[2] / "dags"


@pytest.fixture(scope="module")
def dagbag() -> DagBag:
    return DagBag(dag_folder=str(DAGS))


def test_no_import_errors(dagbag: DagBag) -> None:
    assert dagbag.import_errors == {}
    assert set(dagbag.dag_ids) == {"plate_masking_daily", "plate_masking_restore", "plate_masking_today"}


@pytest.mark.parametrize("dag_id", ["plate_masking_daily", "plate_masking_restore", "plate_masking_today"])
def test_policy(dagbag: DagBag, dag_id: str) -> None:
    dag = dagbag.dags.get(dag_id)
    assert dag.tags and dag.doc_md, "every DAG has tags and its module docstring as doc_md"
    # Airflow 3's DAG docs panel shows a fenced block as one wrapped line: lists read right.
    assert "```" not in dag.doc_md
    assert dag.dag_id == Path(dag.fileloc).stem
    for task in dag.tasks:
        assert task.retries >= 2, f"{task.task_id} must retry transient failures"
    for name in dag.params:
        param = dag.params.get_param(name)
        assert param.schema.get("title") and param.description, f"param {name} needs a title and description"


def test_daily_shape(dagbag: DagBag) -> None:
    dag = dagbag.dags.get("plate_masking_daily")
    assert {t.task_id for t in dag.tasks} == {"plan_uploads", "mask_car", "finish_day"}
    assert dag.task_dict["finish_day"].trigger_rule == "all_done"
    assert dag.task_dict["mask_car"].upstream_task_ids == {"plan_uploads"}
    assert type(dag.timetable).__name__ == "CronDataIntervalTimetable"  # day D runs after D ends
    assert dag.max_active_runs == 1
    assert set(dag.params) == {"date", "force"}
    # Bounded without a pool: a pool that nobody created leaves car tasks scheduled forever.
    masks = dag.task_dict["mask_car"]
    assert masks.pool == "default_pool" and masks.max_active_tis_per_dag == 4
    # Airflow's mapping shape: one task per batch of car ids, the day a constant of the run.
    assert set(masks.expand_input.value) == {"car_ids"}
    day = masks.partial_kwargs["day"]
    assert (day.operator.task_id, day.key) == ("plan_uploads", "day")
    car_ids = masks.expand_input.value["car_ids"]
    assert (car_ids.operator.task_id, car_ids.key) == ("plan_uploads", "return_value")
    # ...because Airflow maps over a return value only, never over a named output:
    with pytest.raises(ValueError, match="cannot map over XCom with custom key"):
        PlateMaskOperator.partial(task_id="probe", day="2026-02-03").expand(car_ids=car_ids.operator.output["batches"])
    # finish_day's outputs are declared (DayResult, one XCom per key), not inferred from `-> dict`.
    assert dag.task_dict["finish_day"].multiple_outputs and not dag.task_dict["plan_uploads"].multiple_outputs


def test_today_shape(dagbag: DagBag) -> None:
    dag = dagbag.dags.get("plate_masking_today")
    daily = dagbag.dags.get("plate_masking_daily")
    assert {t.task_id for t in dag.tasks} == {"plan_today", "mask_car", "finish_today"}
    assert set(dag.tags) == {"platemask", "same-day"} and "PLATEMASK_TODAY_EVERY" in dag.doc_md
    assert dag.max_active_runs == 1 and not dag.catchup
    assert type(dag.timetable).__name__ == "DeltaTriggerTimetable"
    assert dag.timetable.delta == dt.timedelta(minutes=15)  # PLATEMASK_TODAY_EVERY's default
    assert dag.task_dict["finish_today"].trigger_rule == "all_done"
    assert set(dag.params) == {"date"}
    # The daily DAG's car task, mapped the same way and labelled by car id.
    masks, daily_masks = dag.task_dict["mask_car"], daily.task_dict["mask_car"]
    assert type(masks) is type(daily_masks) and masks.map_index_template == daily_masks.map_index_template
    assert masks.max_active_tis_per_dag == daily_masks.max_active_tis_per_dag
    assert masks.execution_timeout == daily_masks.execution_timeout
    for mapped in (masks, daily_masks):  # a hung car is news at once in both
        assert [type(c).__name__ for c in mapped.on_retry_callback] == ["ChatworkNotifier"]
    car_ids = masks.expand_input.value["car_ids"]
    assert (car_ids.operator.task_id, car_ids.key) == ("plan_today", "return_value")
    assert (masks.partial_kwargs["day"].operator.task_id, masks.partial_kwargs["day"].key) == ("plan_today", "day")


@pytest.mark.parametrize(
    ("every", "expected"),
    [pytest.param("0", "NullTimetable", id="off"), pytest.param("5", "DeltaTriggerTimetable 0:05:00", id="five")],
)
def test_today_schedule_comes_from_the_environment(every: str, expected: str) -> None:
    probe = f"from airflow.dag_processing.dagbag import DagBag; b = DagBag(dag_folder={str(DAGS)!r}); "
    probe += "t = b.dags['plate_masking_today'].timetable; print(type(t).__name__, getattr(t, 'delta', ''))"
    env = {**os.environ, "PLATEMASK_TODAY_EVERY": every}
    result = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1].strip() == expected


def test_car_task_bound_comes_from_the_environment() -> None:
    probe = f"from airflow.dag_processing.dagbag import DagBag; b = DagBag(dag_folder={str(DAGS)!r}); "
    probe += "print(b.dags['plate_masking_daily'].task_dict['mask_car'].max_active_tis_per_dag)"
    env = {**os.environ, "PLATEMASK_CAR_TASKS": "9"}
    result = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert result.stdout.split()[-1] == "9"


def test_restore_form(dagbag: DagBag) -> None:
    dag = dagbag.dags.get("plate_masking_restore")
    assert type(dag.timetable).__name__ == "NullTimetable"  # schedule=None: manual only
    params = dag.params
    assert set(params) == {"date", "status", "car_id", "dry_run", "remove_detect"}
    assert params.get_param("dry_run").value is True
    assert params.get_param("status").schema["enum"] == ["done", "error", "verified", "all"]


def test_parse_imports_no_model_code() -> None:
    # A fresh interpreter, like a DAG processor: no model code, not even numpy or OpenCV.
    script = (
        "import json, sys, time\n"
        "HEAVY = ('torch', 'ultralytics', 'openvino', 'onnxruntime', 'cv2', 'numpy')\n"
        "t = time.perf_counter()\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        "t0 = time.perf_counter()\n"
        f"bag = DagBag(dag_folder={str(DAGS)!r})\n"
        "print(json.dumps({'seconds': time.perf_counter() - t0, 'errors': list(bag.import_errors),"
        " 'heavy': [m for m in HEAVY if m in sys.modules]}))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=os.environ, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    # What makes a parse slow is what it imports; wall time on a shared CI machine would only flake.
    assert result["errors"] == [] and result["heavy"] == []
