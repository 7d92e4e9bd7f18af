"""Byte-level access to the photo storage: a mounted folder here, S3 in ``platemask.s3``.

Every write is all-or-nothing: readers see the old bytes or the new bytes, never a mix. Paths
are the storage-relative ``/upfile/...`` strings of :mod:`platemask.paths`.
"""

from __future__ import annotations

import errno
import os
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from platemask.errors import ImageTooLargeError, MissingFileError, StorageError, UnsafePathError

if TYPE_CHECKING:
    from platemask.config import Settings

__all__ = ["LocalStorage", "Storage", "atomic_write", "open_log_storage", "open_storage"]

# errno values that will not pass by retrying.
_PERMANENT = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENAMETOOLONG, errno.EISDIR, errno.ENOTDIR}
# link() is not offered by every file system (s3fs, some FUSE mounts).
_NO_LINK = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.ENOSYS, errno.EMLINK}


class Storage(Protocol):
    """What the pipeline needs from a storage; paths are storage-relative."""

    def read(self, path: str, *, max_bytes: int | None = None) -> bytes:
        """Return the file's bytes; :class:`MissingFileError` when absent."""
        ...

    def write(self, path: str, data: bytes) -> None:
        """Replace the file atomically, creating its folder when needed."""
        ...

    def create(self, path: str, data: bytes) -> bool:
        """Create the file only if absent, atomically; False when it already existed."""
        ...

    def create_from(self, path: str, source: str, data: bytes) -> bool:
        """Create ``path`` as a copy of ``source`` (whose bytes are ``data``) only if absent."""
        ...

    def exists(self, path: str) -> bool:
        """Whether the file exists."""
        ...

    def list(self, folder: str) -> Iterator[str]:
        """Names of the files directly in ``folder`` (none when it does not exist)."""
        ...

    def age(self, path: str) -> float | None:
        """Seconds since the file was last written; None when it does not exist."""
        ...

    def delete(self, path: str) -> None:
        """Remove the file if present."""
        ...

    def describe(self, path: str) -> str:
        """Human-readable location of ``path`` for messages."""
        ...


class LocalStorage:
    """A folder on a local or mounted file system (the customer's ``S3_MOUNT``)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"LocalStorage({str(self.root)!r})"

    def locate(self, path: str) -> Path:
        """Absolute path of ``path``, refusing anything that resolves outside the root."""
        root = self.root.resolve()
        target = (root / path.lstrip("/")).resolve()
        if not target.is_relative_to(root):
            raise UnsafePathError(f"{path!r} resolves outside the storage root (symlink?)")
        return target

    def read(self, path: str, *, max_bytes: int | None = None) -> bytes:
        target = self.locate(path)
        try:
            with target.open("rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                if max_bytes is not None and size > max_bytes:
                    raise ImageTooLargeError(f"{path} is {size} bytes, over the {max_bytes} byte limit")
                return handle.read()
        except FileNotFoundError:
            raise MissingFileError(f"{path} does not exist") from None
        except IsADirectoryError:
            raise MissingFileError(f"{path} is a folder, not a file") from None
        except OSError as exc:
            raise _storage_error(f"cannot read {path}", exc) from exc

    def write(self, path: str, data: bytes) -> None:
        target = self.locate(path)
        try:
            atomic_write(target, data)
        except OSError as exc:
            raise _storage_error(f"cannot write {path}", exc) from exc

    def create(self, path: str, data: bytes) -> bool:
        target = self.locate(path)
        try:
            return _create_exclusive(target, data)
        except OSError as exc:
            raise _storage_error(f"cannot create {path}", exc) from exc

    def create_from(self, path: str, source: str, data: bytes) -> bool:
        return self.create(path, data)  # the bytes are at hand: no second read of the source

    def exists(self, path: str) -> bool:
        return self.locate(path).is_file()

    def list(self, folder: str) -> Iterator[str]:
        target = self.locate(folder)
        if target.is_dir():
            yield from sorted(p.name for p in target.iterdir() if p.is_file() and not p.name.startswith("."))

    def age(self, path: str) -> float | None:
        try:
            return time.time() - self.locate(path).stat().st_mtime
        except FileNotFoundError:
            return None

    def delete(self, path: str) -> None:
        try:
            self.locate(path).unlink(missing_ok=True)
        except OSError as exc:
            raise _storage_error(f"cannot delete {path}", exc) from exc

    def describe(self, path: str) -> str:
        return str(self.root / path.lstrip("/"))


def open_storage(settings: Settings, s3_client: Callable[[], Any] | None = None) -> tuple[Storage, Storage]:
    """The photo storage and the backup storage for ``settings``.

    ``S3_MOUNT`` is a folder (a mounted bucket) or ``s3://bucket/prefix`` (direct S3, no mount);
    with ``BACKUP_S3_BUCKET`` backups are S3 server-side copies. ``s3_client`` builds the boto3
    client (Airflow passes its S3Hook's); by default boto3's own credential chain is used.
    """
    settings.require_storage()
    make_client = s3_client or _boto3_client
    if settings.s3_mount.startswith("s3://"):
        from platemask.s3 import S3Storage, parse_s3_url

        store: Storage = S3Storage(make_client(), *parse_s3_url(settings.s3_mount))
    else:
        store = LocalStorage(settings.s3_mount)
    if not settings.backup_s3_bucket:
        return store, store
    from platemask.s3 import S3Storage

    if isinstance(store, S3Storage):  # photos in one bucket, backups copied into another
        return store, S3Storage(
            store.client, settings.backup_s3_bucket, settings.backup_s3_key_prefix, copy_source=store
        )
    # A mount of BACKUP_S3_BUCKET: the photo's object is at BACKUP_S3_KEY_PREFIX + its path.
    return store, S3Storage(make_client(), settings.backup_s3_bucket, settings.backup_s3_key_prefix)


def open_log_storage(settings: Settings, s3_client: Callable[[], Any] | None = None) -> Storage:
    """Where ``tracking/`` lives: ``LOG_DIR`` as a folder, or ``s3://bucket/prefix``."""
    if settings.log_dir.startswith("s3://"):
        from platemask.s3 import S3Storage, parse_s3_url

        return S3Storage((s3_client or _boto3_client)(), *parse_s3_url(settings.log_dir))
    return LocalStorage(settings.log_dir)


def _boto3_client() -> Any:
    import boto3
    from botocore.config import Config

    from platemask.s3 import RETRY_CONFIG

    return boto3.client("s3", config=Config(**RETRY_CONFIG))


def atomic_write(target: Path, data: bytes) -> None:
    """Write ``data`` to ``target`` through a temp file + rename in the same folder."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _write_temp(target, data)
    try:
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _create_exclusive(target: Path, data: bytes) -> bool:
    """Create ``target`` only if absent; a complete file appears at once or not at all."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _write_temp(target, data)
    try:
        os.link(tmp, target)  # atomic and fails if target exists: no check-then-copy race
        return True
    except FileExistsError:
        return False
    except OSError as exc:
        if exc.errno not in _NO_LINK:
            raise
        return _create_without_link(target, data)
    finally:
        tmp.unlink(missing_ok=True)


def _create_without_link(target: Path, data: bytes) -> bool:
    """Fallback for file systems without hard links: O_EXCL create, removed again on failure."""
    try:
        _write_exclusive(target, data)
    except FileExistsError:
        return False
    return True


def _write_temp(target: Path, data: bytes) -> Path:
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    _write_exclusive(tmp, data)
    return tmp


def _write_exclusive(path: Path, data: bytes) -> None:
    """Create ``path`` (FileExistsError if it exists), write ``data`` and fsync; on failure remove it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def _storage_error(message: str, exc: OSError) -> StorageError:
    error = StorageError(f"{message}: {exc.strerror or exc}")
    error.transient = exc.errno not in _PERMANENT
    return error
