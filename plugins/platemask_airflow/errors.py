"""Task outcomes the DAG files name (kept free of heavy imports: DAG files import it when parsed)."""

from __future__ import annotations

from airflow.sdk.exceptions import AirflowFailException

__all__ = ["FailedPhotos", "NothingToFinish"]


class FailedPhotos(AirflowFailException):
    """The day is finished and its summary sent, but photos failed: the run shows red for them."""


class NothingToFinish(AirflowFailException):
    """The planning task did not complete in this run; its own alert said why."""
