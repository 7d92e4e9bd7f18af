"""The platemask Airflow plugin: "Photos to check" in the Airflow UI.

Airflow's plugin manager loads every module of the plugins folder; this one registers the
FastAPI app that serves the pages (``/platemask``) and two links to it: one in the navigation,
one on the run page of the daily DAG (Airflow shows ``dag_run`` views on every DAG's runs; the
page says so for another DAG's run).
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from platemask_airflow import PHOTOS_TO_CHECK_PATH, URL_PREFIX
from platemask_airflow.photo_fixes import app


class PlatemaskPlugin(AirflowPlugin):
    """Photos to check: the pages, and where the UI links to them."""

    name = "platemask"
    fastapi_apps = [{"app": app, "url_prefix": URL_PREFIX, "name": "Photos to check"}]  # noqa: RUF012
    external_views = [  # noqa: RUF012
        {
            "name": "Photos to check",
            "href": PHOTOS_TO_CHECK_PATH,
            "destination": "nav",
            "category": "browse",
            "url_route": "photos-to-check",
        },
        {
            "name": "Photos to check",
            "href": f"{PHOTOS_TO_CHECK_PATH}?dag_id={{DAG_ID}}&run_id={{RUN_ID}}",
            "destination": "dag_run",
            "url_route": "photos-of-run",
        },
    ]
