"""Airflow's local-settings hook: every Airflow process imports this module when it starts.

Car tasks are forked from the process that supervises them (a LocalExecutor worker, itself a
fork of the scheduler, or a Celery worker). Importing numpy, OpenCV and OpenVINO here, once per
worker, means every car task process inherits them instead of paying about 0.6 CPU-s to import
them again (``make bench`` measures it). Only those processes preload: the API server and the
DAG processor never run photo work. ``PLATEMASK_PRELOAD=false`` turns it off.

Airflow finds this file because the plugins folder is on its import path; a deployment with its
own ``airflow_local_settings.py`` (in ``$AIRFLOW_HOME/config``, which comes first) should call
:func:`preload_photo_work` from it.
"""

from __future__ import annotations

import logging
import os
import sys

__all__: list[str] = []  # Airflow copies this module's public names into airflow.settings

_TASK_RUNNERS = ("scheduler", "celery", "standalone")


def preload_photo_work() -> None:
    """Import what a car task's photo work needs, in a process that forks car tasks."""
    if os.environ.get("PLATEMASK_PRELOAD", "true").strip().lower() in ("0", "false", "no", "off"):
        return
    if not any(command in sys.argv[1:3] for command in _TASK_RUNNERS):
        return
    try:
        import openvino  # noqa: F401  (the runtime; the model itself loads in the task, after the fork)

        import platemask.pipeline
        import platemask.runtime  # noqa: F401
    except Exception as exc:  # never stop Airflow from starting: tasks then import these themselves
        logging.getLogger(__name__).warning("platemask preload skipped: %s: %s", type(exc).__name__, exc)


def fill_in_api_base_url() -> None:
    """With only ``[api] port`` changed, point task processes and links at that port.

    Airflow's default execution API URL is ``http://localhost:8080/execution/`` whatever port
    the API server listens on, so with ``AIRFLOW__API__PORT=8123`` alone every task dies
    reaching 8080, with nothing in its log, and log links in Chatwork point at 8080. When
    neither ``[api] base_url`` nor ``[core] execution_api_server_url`` is set, derive both from
    the API server's own host and port.
    """
    try:
        from airflow.configuration import conf

        if conf.get("api", "base_url", fallback=None) or conf.get("core", "execution_api_server_url", fallback=None):
            return
        port = conf.get("api", "port", fallback="8080")
        if port == "8080":
            return
        host = conf.get("api", "host", fallback="") or "localhost"
        host = "localhost" if host in ("0.0.0.0", "::", "") else host  # listening everywhere: reach it locally
        os.environ["AIRFLOW__API__BASE_URL"] = f"http://{host}:{port}"
    except Exception as exc:  # never stop Airflow from starting over this
        logging.getLogger(__name__).warning("platemask could not derive [api] base_url: %s", exc)


fill_in_api_base_url()
preload_photo_work()
