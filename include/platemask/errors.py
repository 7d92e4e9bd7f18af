"""Exceptions: one base class, one subclass per reason a photo or an action can fail.

Every per-photo failure ends up in the tracking record as ``"<code>: <message>"`` so an operator
can grep a day's errors by kind. Subclasses also inherit the built-in that describes them best,
so callers that only know Python's exceptions still catch them.
"""

from __future__ import annotations

__all__ = [
    "INFRASTRUCTURE_CODES",
    "BackupError",
    "ChatworkError",
    "ConfigError",
    "CorrectionConflictError",
    "DayBusyError",
    "ImageTooLargeError",
    "InternalError",
    "InvalidCorrectionError",
    "InvalidImageError",
    "MissingFileError",
    "ModelError",
    "OutputMissingError",
    "OutputVerificationError",
    "PlateMaskError",
    "ResourceError",
    "StorageError",
    "TrackingError",
    "UnsafePathError",
    "is_infrastructure",
]


class PlateMaskError(Exception):
    """Base class of every error platemask raises on purpose."""

    code = "error"
    #: True when trying again later may succeed (storage or network hiccups).
    transient = False
    #: True when the platform failed (model, memory, settings, storage), not the photo: such
    #: errors are retried and counted apart from bad input.
    infrastructure = False

    def describe(self) -> str:
        """Return the ``"<code>: <message>"`` line stored in tracking records."""
        return f"{self.code}: {self}"


class ConfigError(PlateMaskError, ValueError):
    """A setting is missing or has an invalid value; the message names the setting."""

    code = "config"
    infrastructure = True
    transient = True  # fixed by an operator while the task waits for its retry


class UnsafePathError(PlateMaskError, ValueError):
    """A database path escapes the storage root (``..``, absolute tricks, symlinks out)."""

    code = "unsafe_path"


class MissingFileError(PlateMaskError, FileNotFoundError):
    """The photo named in the database does not exist on the storage."""

    code = "missing_file"


class InvalidImageError(PlateMaskError, ValueError):
    """The file is empty, truncated, corrupt, not a JPEG, or not a usable photo."""

    code = "invalid_image"


class ImageTooLargeError(InvalidImageError):
    """The image's pixel count or byte size exceeds the configured limit (decompression bombs)."""

    code = "image_too_large"


class BackupError(PlateMaskError):
    """The original could not be backed up or the backup cannot be trusted."""

    code = "backup"


class PhotoChangedError(PlateMaskError):
    """Staff replaced the photo while it was processed: processed again from the new upload."""

    code = "photo_changed"
    transient = True


class OutputVerificationError(PlateMaskError):
    """An expected output is missing, undecodable or of the wrong size after writing."""

    code = "output_invalid"


class OutputMissingError(OutputVerificationError):
    """An expected output does not exist after writing."""

    code = "output_missing"


class StorageError(PlateMaskError, OSError):
    """Reading or writing the storage failed in a way that may pass (I/O error, S3 5xx, throttling)."""

    code = "storage"
    transient = True
    infrastructure = True


class ModelError(PlateMaskError, RuntimeError):
    """The plate model cannot be found, loaded or run."""

    code = "model"
    transient = True  # a file being replaced, a cache being written: worth another try
    infrastructure = True


class ResourceError(PlateMaskError, MemoryError):
    """The host ran out of memory (or another resource) while handling a photo."""

    code = "memory"
    transient = True
    infrastructure = True


class InternalError(PlateMaskError, RuntimeError):
    """An unexpected failure while handling one photo (a bug or a library error); see the log."""

    code = "internal"


class TrackingError(PlateMaskError):
    """A tracking file is unreadable, invalid, or its lock could not be taken."""

    code = "tracking"
    infrastructure = True


class DayBusyError(PlateMaskError):
    """A daily run and a restore of the same day would interleave: the later one waits (retries)."""

    code = "day_busy"
    transient = True


class CorrectionConflictError(PlateMaskError):
    """Someone saved a fix of the same photo since this one was started: reload, then fix again."""

    code = "conflict"


class InvalidCorrectionError(PlateMaskError, ValueError):
    """A fix that cannot be applied: a box outside the photo, an unknown mask, a photo not processed."""

    code = "invalid_correction"


class ChatworkError(PlateMaskError):
    """Chatwork refused the message or could not be reached after the retries."""

    code = "chatwork"


#: Codes of the ``"<code>: <message>"`` lines whose cause is the platform, not the photo; the
#: line a dead car task leaves (platemask.tracking.INCOMPLETE) is one of them.
INFRASTRUCTURE_CODES = frozenset(
    {cls.code for cls in (ConfigError, StorageError, ModelError, ResourceError, TrackingError)} | {"incomplete"}
)


def is_infrastructure(line: str) -> bool:
    """Whether a tracking record's ``error`` line is an infrastructure fault (not bad input)."""
    return line.split(":", 1)[0] in INFRASTRUCTURE_CODES
