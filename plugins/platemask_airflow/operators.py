"""The car operator: one mapped task instance per car (or per small batch of cars)."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from platemask.config import Settings, check_mask_style
from platemask.errors import ConfigError

if TYPE_CHECKING:
    from platemask.daily import CarResult

__all__ = ["PlateMaskOperator", "car_label"]


def car_label(car_ids: Sequence[str]) -> str:
    """The task's label in the UI (``map_index_template="{{ car_label }}"``)."""
    return car_ids[0] if len(car_ids) == 1 else f"{car_ids[0]} +{len(car_ids) - 1} cars"


class PlateMaskOperator(BaseOperator):
    """Back up, detect, mask and verify the unfinished photos of one car (spec rules 1-4).

    The work list is the car's tracking part written by the planning task, so a retry or a
    cleared-and-rerun task picks up exactly the photos that are not verified yet. A photo that
    is bad input fails the task at once; storage hiccups make it retry.

    :param car_ids: the car id to process, or a list of them when cars are batched
    :param day: the site-local day (``YYYY-MM-DD``) being processed
    :param s3_mount: photo root; defaults to the ``S3_MOUNT`` environment variable
    :param log_dir: folder of ``tracking/``; defaults to ``LOG_DIR``
    :param mask_style: ``fill``, ``blur``, ``pixelate`` or ``logo``; defaults to ``PLATEMASK_MASK_STYLE``
    :param aws_conn_id: Airflow connection for S3 calls (S3 backups or an ``s3://`` photo root)
    """

    template_fields: Sequence[str] = ("car_ids", "day", "s3_mount", "log_dir", "mask_style")
    ui_color = "#ffd166"

    def __init__(
        self,
        *,
        car_ids: str | Sequence[str],
        day: str,
        s3_mount: str | None = None,
        log_dir: str | None = None,
        mask_style: str | None = None,
        aws_conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.car_ids = car_ids
        self.day = day
        self.s3_mount = s3_mount
        self.log_dir = log_dir
        self.mask_style = mask_style
        self.aws_conn_id = aws_conn_id
        if mask_style and "{{" not in mask_style:
            check_mask_style(mask_style, "mask_style")  # at parse time, unless a template decides

    def execute(self, context: Context) -> list[dict[str, Any]]:
        started_cpu_s = time.process_time()  # this process's start-up so far: fork, task runner, DAG parse
        car_ids = [self.car_ids] if isinstance(self.car_ids, str) else [str(c) for c in self.car_ids]
        if not car_ids:
            raise ConfigError("car_ids is empty: nothing to process")
        context["car_label"] = car_label(car_ids)  # type: ignore[typeddict-unknown-key]
        # Imported here: numpy and OpenCV stay out of DAG parsing.
        from platemask.daily import process_cars
        from platemask.detect import get_detector
        from platemask_airflow.storage import day_tracking, open_storage

        settings = self._settings()
        store, backups = open_storage(settings)
        tracking = day_tracking(settings, dt.date.fromisoformat(self.day))
        detector = get_detector(settings.detect)
        results = process_cars(car_ids, tracking, settings=settings, store=store, backups=backups, detector=detector)
        self._log_cost(results, started_cpu_s, detector.ready_cpu_s)
        self._report(results)
        return [result.as_xcom() for result in results]

    def _settings(self) -> Settings:
        if self.mask_style:
            check_mask_style(self.mask_style, "mask_style")  # again: the value may have come from a template
        base = Settings.from_env()
        settings = base.with_overrides(
            s3_mount=self.s3_mount,
            log_dir=self.log_dir or None,
            aws_conn_id=self.aws_conn_id,
            render=replace(base.render, style=self.mask_style) if self.mask_style else None,
        )
        settings.require_storage()
        return settings

    def _log_cost(self, results: list[CarResult], started_cpu_s: float, ready_cpu_s: float | None) -> None:
        """What this task process cost: its start-up (fork, DAG parse, imports, model) and its photos.

        The model loads while the first photos are read, so "until the model was ready" includes
        that reading; a model loaded by an earlier task of the same process counts as free.
        """
        photos = sum(r.processed for r in results)
        total = time.process_time()  # CPU of this task process since it was forked
        if photos and ready_cpu_s is not None:
            self.log.info(
                "Task cost: %.2f CPU-s until the model was ready (%.2f before execute), "
                "%.2f CPU-s in all for %d photos",
                ready_cpu_s,
                started_cpu_s,
                total,
                photos,
            )

    def _report(self, results: list[CarResult]) -> None:
        failed = [r for r in results if r.errors]
        for result in results:
            self.log.info(
                "Car %s: %d photos processed, %d verified, %d plates, %d errors",
                result.car_id,
                result.processed,
                result.verified,
                result.detections,
                len(result.errors),
            )
        if not failed:
            return
        errors = [line for r in failed for line in r.errors]
        message = f"{len(errors)} photo(s) failed: " + "; ".join(errors[:5]) + (" …" if len(errors) > 5 else "")
        if any(r.infrastructure for r in failed):
            message = "infrastructure fault (model, memory, settings or storage; not the photos): " + message
        if any(r.transient for r in failed):
            raise AirflowException(message + " (retrying)")
        # Bad input does not get better by retrying: fail now, so the car shows red at once.
        raise AirflowFailException("bad input: " + message)
