"""Byte-level access to the photo storage: a mounted folder here, S3 in ``platemask.s3``.

Every write is all-or-nothing: readers see the old bytes or the new bytes, never a mix. Paths
are the storage-relative ``/upfile/...`` strings of :mod:`platemask.paths`.
"""

from __future__ import annotations

import errno
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from platemask.errors import ImageTooLargeError, MissingFileError, StorageError, UnsafePathError

if TYPE_CHECKING:
    from platemask.config import Settings

__all__ = ["LocalStorage", "Storage", "atomic_write", "open_storage"]

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

    def exists(self, path: str) -> bool:
        """Whether the file exists."""
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

    def exists(self, path: str) -> bool:
        return self.locate(path).is_file()

    def delete(self, path: str) -> None:
        try:
            self.locate(path).unlink(missing_ok=True)
        except OSError as exc:
            raise _storage_error(f"cannot delete {path}", exc) from exc

    def describe(self, path: str) -> str:
        return str(self.root / path.lstrip("/"))


def open_storage(settings: Settings) -> tuple[Storage, Storage]:
    """The photo storage and the backup storage for ``settings`` (the same unless S3 backups)."""
    settings.require_storage()
    store = LocalStorage(settings.s3_mount)
    return store, store


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
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return True


def _write_temp(target: Path, data: bytes) -> Path:
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _storage_error(message: str, exc: OSError) -> StorageError:
    error = StorageError(f"{message}: {exc.strerror or exc}")
    error.transient = exc.errno not in _PERMANENT
    return error
