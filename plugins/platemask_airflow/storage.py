"""Storage for tasks: the mounted folder, with S3 clients from Airflow's AWS connection."""

from __future__ import annotations

from platemask.config import Settings
from platemask.storage import Storage
from platemask.storage import open_storage as _open_storage

__all__ = ["open_storage"]


def open_storage(settings: Settings) -> tuple[Storage, Storage]:
    """The photo storage and the backup storage (the same one unless backups go to S3)."""
    return _open_storage(settings)
