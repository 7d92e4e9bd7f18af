"""Photos, backups and tracking files in S3, through a boto3 client (Airflow's S3Hook in tasks).

The same relative ``/upfile/...`` paths as on the mount, mapped to keys under a prefix. S3 writes
are whole-object PUTs, atomic by nature; "create only if absent" is a conditional write
(``If-None-Match: *``), so a backup can never be overwritten even by two workers racing: the
loser gets 412 Precondition Failed, which means "already backed up". Throttling and 5xx answers
are retried by botocore (standard mode, with backoff); what still fails is a transient
:class:`StorageError` with the key in its message.
"""

from __future__ import annotations

import hashlib
import posixpath
import time
from collections.abc import Iterator
from typing import Any

from platemask.errors import ImageTooLargeError, MissingFileError, StorageError, UnsafePathError

__all__ = ["RETRY_CONFIG", "S3Storage", "parse_s3_url"]

#: botocore settings for every client platemask builds: retries with backoff on throttling,
#: 5xx and connection errors, and bounded waits so a dead endpoint fails a photo, not the day.
RETRY_CONFIG: dict[str, Any] = {
    "retries": {"mode": "standard", "max_attempts": 5},
    "connect_timeout": 5,
    "read_timeout": 30,
}

_MISSING = {"NoSuchKey", "404", "NotFound"}
_EXISTS = {"PreconditionFailed", "412"}
_PERMANENT = {"AccessDenied", "403", "NoSuchBucket", "InvalidAccessKeyId", "SignatureDoesNotMatch"}


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` → ``("bucket", "some/prefix")``."""
    if not url.startswith("s3://"):
        raise ValueError(f"not an s3:// URL: {url!r}")
    bucket, _, prefix = url[len("s3://") :].partition("/")
    if not bucket:
        raise ValueError(f"no bucket in {url!r}")
    return bucket, prefix.strip("/")


class S3Storage:
    """Objects under ``s3://bucket/prefix``; implements :class:`platemask.storage.Storage`."""

    def __init__(self, client: Any, bucket: str, prefix: str = "", *, copy_source: S3Storage | None = None) -> None:
        """``copy_source``: where :meth:`create_from` finds its sources when they are not in this
        bucket — the photo storage, when photos and backups are different buckets or prefixes."""
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.copy_source = copy_source

    def __repr__(self) -> str:
        return f"S3Storage('s3://{self.bucket}/{self.prefix}')"

    def key(self, path: str) -> str:
        """The object key of a storage-relative path."""
        clean = posixpath.normpath("/" + path.lstrip("/"))
        if ".." in clean.split("/"):
            raise UnsafePathError(f"{path!r} escapes the storage root")
        return f"{self.prefix}{clean}" if self.prefix else clean.lstrip("/")

    def read(self, path: str, *, max_bytes: int | None = None) -> bytes:
        key = self.key(path)
        with self._errors("read", key):
            answer = self.client.get_object(Bucket=self.bucket, Key=key)
            if max_bytes is not None and answer["ContentLength"] > max_bytes:
                answer["Body"].close()
                raise ImageTooLargeError(f"{path} is {answer['ContentLength']} bytes, over the {max_bytes} byte limit")
            return answer["Body"].read()

    def write(self, path: str, data: bytes) -> None:
        key = self.key(path)
        with self._errors("write", key):
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=_content_type(key))

    def create(self, path: str, data: bytes) -> bool:
        key = self.key(path)
        try:
            with self._errors("create", key):
                self.client.put_object(
                    Bucket=self.bucket, Key=key, Body=data, ContentType=_content_type(key), IfNoneMatch="*"
                )
        except _AlreadyExistsError:
            return False
        return True

    def create_from(self, path: str, source: str, data: bytes) -> bool:
        """Server-side copy of ``source`` to ``path`` if absent; ``data`` is what ``source`` should hold."""
        origin = self.copy_source or self
        key, source_key = self.key(path), origin.key(source)
        try:
            with self._errors("copy", key):
                answer = self.client.copy_object(
                    Bucket=self.bucket,
                    Key=key,
                    CopySource={"Bucket": origin.bucket, "Key": source_key},
                    IfNoneMatch="*",
                )
        except _AlreadyExistsError:
            return False
        # The copy is of S3's object, not of the bytes we read (a mount may lag): check them.
        etag = answer.get("CopyObjectResult", {}).get("ETag", "").strip('"')
        if etag != hashlib.md5(data, usedforsecurity=False).hexdigest() and self.read(path) != data:
            self.delete(path)
            raise StorageError(f"{origin.describe(source)} changed while it was backed up; try again")
        return True

    def exists(self, path: str) -> bool:
        key = self.key(path)
        try:
            with self._errors("check", key):
                self.client.head_object(Bucket=self.bucket, Key=key)
        except MissingFileError:
            return False
        return True

    def delete(self, path: str) -> None:
        key = self.key(path)
        with self._errors("delete", key):
            self.client.delete_object(Bucket=self.bucket, Key=key)

    def list(self, folder: str) -> Iterator[str]:
        """Names of the objects directly under ``folder``."""
        prefix = self.key(folder).rstrip("/") + "/"
        with self._errors("list", prefix):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix, Delimiter="/"
            )
            for page in pages:
                for item in page.get("Contents", ()):
                    yield item["Key"][len(prefix) :]

    def age(self, path: str) -> float | None:
        """Seconds since ``path`` was last written, or None when it does not exist."""
        key = self.key(path)
        try:
            with self._errors("check", key):
                modified = self.client.head_object(Bucket=self.bucket, Key=key)["LastModified"]
        except MissingFileError:
            return None
        return time.time() - modified.timestamp()

    def describe(self, path: str) -> str:
        return f"s3://{self.bucket}/{self.key(path)}"

    def _errors(self, action: str, key: str) -> _ErrorMap:
        return _ErrorMap(action, f"s3://{self.bucket}/{key}")


class _AlreadyExistsError(Exception):
    """412 on a conditional write: the object exists."""


class _ErrorMap:
    """Turn botocore's exceptions into platemask's, naming the object."""

    def __init__(self, action: str, where: str) -> None:
        self.action, self.where = action, where

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, _tb: object) -> bool:
        if error is None or isinstance(error, (StorageError, MissingFileError, ImageTooLargeError)):
            return False
        from botocore.exceptions import BotoCoreError, ClientError

        if isinstance(error, ClientError):
            code = str(error.response.get("Error", {}).get("Code", ""))
            status = str(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
            if code in _MISSING or status == "404":
                raise MissingFileError(f"{self.where} does not exist") from None
            if code in _EXISTS or status == "412":
                raise _AlreadyExistsError from None
            failure = StorageError(f"cannot {self.action} {self.where}: {code or status} {error}")
            failure.transient = code not in _PERMANENT and status != "403"
            raise failure from error
        if isinstance(error, BotoCoreError):
            raise StorageError(f"cannot {self.action} {self.where}: {error}") from error
        return False


def _content_type(key: str) -> str:
    return {"jpg": "image/jpeg", "jpeg": "image/jpeg", "json": "application/json", "png": "image/png"}.get(
        key.rsplit(".", 1)[-1].lower(), "application/octet-stream"
    )
