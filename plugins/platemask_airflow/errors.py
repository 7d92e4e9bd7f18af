"""Task outcomes the DAG files name (kept free of heavy imports: DAG files import it when parsed)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.sdk.exceptions import AirflowFailException

if TYPE_CHECKING:
    from platemask.notify import DaySummary

__all__ = ["FailedPhotos", "NothingToFinish"]


class FailedPhotos(AirflowFailException):
    """The day is finished and its summary sent, but photos failed: the run shows red for them."""

    @classmethod
    def raise_for(cls, summary: DaySummary) -> None:
        """Raise when photos of ``summary`` failed, naming their cars."""
        if summary.failed:
            failing = ", ".join(car.car_id for car in summary.cars if not car.ok) or "rows refused at planning"
            raise cls(f"{summary.failed} photo(s) failed; cars: {failing}")


class NothingToFinish(AirflowFailException):
    """The planning task did not complete in this run; its own alert said why."""
