"""Airflow wiring of platemask: the car operator, the Chatwork notifier and the task helpers.

All logic lives in the Airflow-free ``platemask`` package; this layer only reads Airflow's
connections and context and turns outcomes into task states.
"""

from __future__ import annotations

__all__ = ["PHOTOS_TO_CHECK_PATH", "ChatworkNotifier", "PlateMaskOperator"]

#: Where the API server mounts the "Photos to check" app (platemask_plugin), and its list page.
URL_PREFIX = "/platemask"
PHOTOS_TO_CHECK_PATH = f"{URL_PREFIX}/photos"


def __getattr__(name: str):  # lazy, so importing a submodule does not import them all
    if name == "PlateMaskOperator":
        from platemask_airflow.operators import PlateMaskOperator

        return PlateMaskOperator
    if name == "ChatworkNotifier":
        from platemask_airflow.notifiers import ChatworkNotifier

        return ChatworkNotifier
    raise AttributeError(name)
