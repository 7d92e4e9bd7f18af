"""Storage for tasks: S3 clients come from Airflow's AWS connection (the Amazon provider)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from platemask.config import Settings
from platemask.storage import Storage
from platemask.storage import open_storage as _open_storage
from platemask.tracking import DayTracking

__all__ = ["day_tracking", "open_storage", "s3_client_factory"]

DEFAULT_AWS_CONN_ID = "aws_default"


def s3_client_factory(settings: Settings) -> Callable[[], Any]:
    """Builds the boto3 S3 client of ``AWS_CONN_ID`` (default ``aws_default``) when first needed.

    The connection's extra may set ``endpoint_url`` for an S3-compatible store; without the
    connection, boto3's own credential chain applies (instance roles, AWS_* variables).
    """

    def make() -> Any:
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook
        from botocore.config import Config

        from platemask.s3 import RETRY_CONFIG

        return S3Hook(aws_conn_id=settings.aws_conn_id or DEFAULT_AWS_CONN_ID, config=Config(**RETRY_CONFIG)).get_conn()

    return make


def open_storage(settings: Settings) -> tuple[Storage, Storage]:
    """The photo storage and the backup storage (the same one unless backups go to S3)."""
    return _open_storage(settings, s3_client_factory(settings))


def day_tracking(settings: Settings, day: dt.date) -> DayTracking:
    """The day's tracking file in ``LOG_DIR`` (a shared folder, or S3)."""
    return DayTracking.for_settings(settings, day, s3_client_factory(settings))
