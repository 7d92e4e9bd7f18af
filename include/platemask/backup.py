"""Spec rule 1: back up each original once, and start every run from the clean original.

A backup is created atomically and only if absent, so two workers racing on one photo cannot
clobber it, and never from a photo we wrote ourselves (its backup is missing: an error that
names it). When the photo on storage differs from its backup, three cases exist: it is the
backup itself, it is our own banner output of that backup (put the backup back), or staff
uploaded a new photo (keep the old backup under ``.history/`` and back up the new one — never
silently revert a new upload). Where the photo may be the output of the script platemask took
over from (``PLATEMASK_CUTOVER``), the backup is the original, as rule 1 says: the photo is put
back from it, and what it replaces is kept under ``.history/``.
"""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Collection
from dataclasses import dataclass

from platemask.config import Limits
from platemask.errors import BackupError, MissingFileError
from platemask.images import inspect, output_source, sha256
from platemask.paths import PhotoPaths
from platemask.storage import Storage

__all__ = ["CleanOriginal", "Provenance", "history_path", "prepare_original"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CleanOriginal:
    """The pristine bytes to process, identical to the (now existing) backup."""

    data: bytes
    sha256: str
    backup_created: bool = False
    restored: bool = False
    archived_backup: str | None = None  # where displaced bytes were kept, under .backup/.history/


@dataclass(frozen=True)
class Provenance:
    """What the tracking file says of a photo before it is prepared (the arguments of the same names)."""

    known_outputs: frozenset[str] = frozenset()
    backup_is_original: bool = False


def history_path(paths: PhotoPaths, backup_sha256: str) -> str:
    """Where a superseded backup is kept when staff upload a new version of a photo."""
    folder, name = posixpath.split(paths.backup)
    stem, ext = posixpath.splitext(name)
    return f"{folder}/.history/{stem}.{backup_sha256[:16]}{ext}"


def prepare_original(
    paths: PhotoPaths,
    store: Storage,
    backups: Storage,
    limits: Limits,
    *,
    known_outputs: Collection[str] = (),
    backup_is_original: bool = False,
) -> CleanOriginal:
    """Ensure a backup exists and return the clean original (rule 1).

    ``known_outputs`` are sha256s of outputs a tracking record says we wrote for this photo.
    ``backup_is_original`` (a cut-over, :class:`platemask.config.Cutover`): a photo that differs
    from its backup is not a new upload but the old script's output.
    """
    current = store.read(paths.original, max_bytes=limits.max_bytes)
    backup = _read_backup(paths, backups, limits)
    if backup is None:
        _refuse_our_own_output(paths, current, known_outputs)
        inspect(current, limits)  # never make a backup of something we will refuse anyway
        # On S3 this is a server-side copy of the original's object: the bytes don't travel again.
        if backups.create_from(paths.backup, paths.original, current):
            log.debug("Backed up %s", paths.original)
            return CleanOriginal(current, sha256(current), backup_created=True)
        backup = _read_backup(paths, backups, limits)  # another worker won the race
        if backup is None:
            raise BackupError(f"backup {paths.backup} vanished right after it was created")

    current_sha, backup_sha = sha256(current), sha256(backup)
    if current_sha == backup_sha:
        return CleanOriginal(backup, backup_sha)
    if output_source(current) == backup_sha or current_sha in known_outputs:
        store.write(paths.original, backup)  # our banner version: put the clean original back
        return CleanOriginal(backup, backup_sha, restored=True)
    if backup_is_original:
        return _put_backup_back(paths, store, backups, current, backup, backup_sha)
    return _adopt_new_upload(paths, backups, limits, current, backup, backup_sha)


def _refuse_our_own_output(paths: PhotoPaths, current: bytes, known_outputs: Collection[str]) -> None:
    """A photo we wrote is never taken for an original: its backup is gone (``.backup/`` cleaned,
    the backup settings changed), and backing up the banner version would make it the original
    for good (a second banner next run, the banner version back on restore)."""
    source = output_source(current)
    if source is not None or sha256(current) in known_outputs:
        named = f" (written from an original of sha256 {source[:16]}…)" if source else ""
        raise BackupError(
            f"{paths.original} is platemask's own output{named} and its backup {paths.backup} is "
            "missing: put the original back there (or restore it), then run the car again"
        )


def _adopt_new_upload(
    paths: PhotoPaths, backups: Storage, limits: Limits, current: bytes, backup: bytes, backup_sha: str
) -> CleanOriginal:
    inspect(current, limits)  # a broken re-upload must not displace a good backup
    archive = _keep_in_history(paths, backups, backup, backup_sha)
    backups.write(paths.backup, current)
    log.warning("%s was replaced by a new upload; previous backup kept at %s", paths.original, archive)
    return CleanOriginal(current, sha256(current), backup_created=True, archived_backup=archive)


def _put_backup_back(
    paths: PhotoPaths, store: Storage, backups: Storage, current: bytes, backup: bytes, backup_sha: str
) -> CleanOriginal:
    archive = _keep_in_history(paths, backups, current, sha256(current))  # in case it was a re-upload after all
    store.write(paths.original, backup)
    log.warning(
        "%s differed from its backup (cut-over): put back, the replaced photo kept at %s", paths.original, archive
    )
    return CleanOriginal(backup, backup_sha, restored=True, archived_backup=archive)


def _keep_in_history(paths: PhotoPaths, backups: Storage, data: bytes, data_sha: str) -> str:
    """Keep ``data`` under ``.backup/.history/`` before it is replaced; nothing is replaced if that fails."""
    archive = history_path(paths, data_sha)
    backups.create(archive, data)  # named by content: an existing file holds the same bytes
    if sha256(backups.read(archive)) != data_sha:
        raise BackupError(f"could not keep {data_sha[:16]}… at {archive}; nothing replaced")
    return archive


def _read_backup(paths: PhotoPaths, backups: Storage, limits: Limits) -> bytes | None:
    try:
        return backups.read(paths.backup, max_bytes=limits.max_bytes)
    except MissingFileError:
        return None
