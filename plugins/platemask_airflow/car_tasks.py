"""The mapped car tasks both masking DAGs run after their planning task (light: DAG files import it)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.sdk.exceptions import AirflowTaskTimeout

from platemask.config import car_tasks, car_timeout
from platemask_airflow.notifiers import ChatworkNotifier
from platemask_airflow.operators import PlateMaskOperator

if TYPE_CHECKING:
    from airflow.sdk.definitions.xcom_arg import XComArg

__all__ = ["mask_each_car"]


def mask_each_car(plan: XComArg) -> XComArg:
    """``mask_car``, one task per car batch that ``plan`` returns, labelled with its car id.

    At most ``PLATEMASK_CAR_TASKS`` of them run at once (per DAG); each car may take
    ``PLATEMASK_CAR_TIMEOUT`` minutes before it is stopped and retried. A failed car alerts
    Chatwork with its car id, and so does a hung one at once, not after its last retry.
    """
    timeout = car_timeout()
    return PlateMaskOperator.partial(
        task_id="mask_car",
        day=plan["day"],
        max_active_tis_per_dag=car_tasks(),
        map_index_template="{{ car_label }}",
        execution_timeout=timeout,
        on_failure_callback=ChatworkNotifier.task_failed("a car's photos are not all masked"),
        on_retry_callback=ChatworkNotifier.task_failed(
            f"a car task ran past its {timeout} timeout and was stopped; it is retried",
            only=(AirflowTaskTimeout,),
        ),
    ).expand(car_ids=plan)
