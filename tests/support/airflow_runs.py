"""Run DAGs the way operators do, without a scheduler: trigger, clear and rerun."""

from __future__ import annotations

import datetime as dt
from typing import Any


def load_dag(dag_id: str):
    """The DAG as the DAG processor parses it from ``dags/``."""
    import os

    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    assert not bag.import_errors, bag.import_errors
    return bag.get_dag(dag_id)


def trigger(
    dag_id: str,
    logical_date: dt.datetime | None,
    conf: dict[str, Any] | None = None,
    *,
    retries: dict[str, int] | None = None,
):
    """One run, tasks executed in this process (``dag.test``); returns the finished DagRun.

    ``retries`` (task id → retries) replaces the DAG's retries of a task that a test makes fail
    on purpose: ``dag.test`` honours retry delays, which are minutes with backoff.
    """
    dag = load_dag(dag_id)
    for task_id, count in (retries or {}).items():
        dag.task_dict[task_id].retries = count
    return dag.test(logical_date=logical_date, run_conf=conf)


def task_states(dag_run) -> dict[tuple[str, int], str]:
    """``{(task_id, map_index): state}`` of a run, fresh from the database."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        tis = session.scalars(select(TaskInstance).where(TaskInstance.run_id == dag_run.run_id)).all()
        return {(ti.task_id, ti.map_index): str(ti.state) for ti in tis}


def rendered_map_indexes(dag_run, task_id: str) -> dict[int, str]:
    """The labels the UI shows for a mapped task (rendered ``map_index_template``)."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        tis = session.scalars(
            select(TaskInstance).where(TaskInstance.run_id == dag_run.run_id, TaskInstance.task_id == task_id)
        ).all()
        return {ti.map_index: ti.rendered_map_index for ti in tis}


def clear_and_rerun(dag_id: str, dag_run, task_id: str, map_index: int, *, downstream: bool = True):
    """What *Clear task instance* (with *Downstream*) in the UI does, then the scheduler's work.

    Clears one mapped task instance and its downstream tasks with Airflow's own
    ``clear_task_instances``, then runs whatever became schedulable until the run finishes,
    with the same in-process runner ``dag.test`` uses.
    """
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance, clear_task_instances
    from airflow.sdk.definitions.dag import _run_task
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState, TaskInstanceState
    from sqlalchemy import select

    dag = load_dag(dag_id)
    wanted = {(task_id, map_index)}
    if downstream:
        wanted |= {(t, -1) for t in dag.task_dict[task_id].get_flat_relative_ids(upstream=False)}
    with create_session() as session:
        tis = session.scalars(select(TaskInstance).where(TaskInstance.run_id == dag_run.run_id)).all()
        chosen = [ti for ti in tis if (ti.task_id, ti.map_index) in wanted]
        assert chosen, f"nothing to clear for {wanted}"
        clear_task_instances(chosen, session, DagRunState.QUEUED)
    with create_session() as session:
        run = session.scalar(select(DagRun).where(DagRun.run_id == dag_run.run_id))
        run.state = DagRunState.RUNNING
        session.commit()
        for _ in range(100):
            session.expire_all()
            run = session.scalar(select(DagRun).where(DagRun.run_id == dag_run.run_id))
            run.dag = _scheduler_dag(dag)
            schedulable, _ = run.update_state(session=session)
            if run.state != DagRunState.RUNNING:
                return run
            for ti in schedulable:
                ti.try_number += 1
                ti.state = TaskInstanceState.SCHEDULED
            session.commit()
            for ti in schedulable:
                _run_task(ti=ti, task=dag.task_dict[ti.task_id])
        raise AssertionError("the run did not finish")


def _scheduler_dag(dag):
    from airflow.serialization.serialized_objects import DagSerialization

    return DagSerialization.deserialize_dag(DagSerialization.serialize_dag(dag))


def xcom(dag_run, task_id: str, key: str = "return_value", map_index: int = -1) -> Any:
    """A task's XCom value, as the next task (or the UI) sees it."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        row = session.scalar(
            select(XComModel).where(
                XComModel.run_id == dag_run.run_id,
                XComModel.task_id == task_id,
                XComModel.key == key,
                XComModel.map_index == map_index,
            )
        )
        assert row is not None, f"no XCom {key} from {task_id}"
        return XComModel.deserialize_value(row)
