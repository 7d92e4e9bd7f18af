"""S3 storage, S3 backups and direct-S3 processing against a real S3 server (SeaweedFS)."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from platemask.backup import prepare_original
from platemask.config import Limits
from platemask.errors import MissingFileError, StorageError
from platemask.images import sha256
from platemask.paths import photo_paths
from platemask.pipeline import process_photos
from platemask.s3 import S3Storage, parse_s3_url
from platemask.storage import LocalStorage
from platemask.uploads import Photo
from tests.support.photos import StubDetector, jpeg_bytes, noisy_photo
from tests.support.seaweed import Seaweed

pytestmark = pytest.mark.s3

PATH = "/upfile/1041/8430/10418430001.jpg"
PATHS = photo_paths(PATH)


@pytest.fixture
def store(weed: Seaweed, bucket: str) -> S3Storage:
    return S3Storage(weed.client(), bucket, "webroot")


@pytest.mark.parametrize(
    ("url", "parsed"),
    [
        pytest.param("s3://photos/webroot", ("photos", "webroot"), id="prefix"),
        pytest.param("s3://photos", ("photos", ""), id="bucket-only"),
        pytest.param("s3://photos/a/b/", ("photos", "a/b"), id="nested"),
    ],
)
def test_parse_s3_url(url: str, parsed: tuple[str, str]) -> None:
    assert parse_s3_url(url) == parsed


def test_paths_map_to_keys_under_the_prefix(store: S3Storage, weed: Seaweed, bucket: str) -> None:
    store.write(PATH, b"data")
    body = weed.client().get_object(Bucket=bucket, Key="webroot/upfile/1041/8430/10418430001.jpg")["Body"].read()
    assert body == b"data" and store.read(PATH) == b"data"
    assert store.describe(PATH) == f"s3://{bucket}/webroot/upfile/1041/8430/10418430001.jpg"
    assert store.exists(PATH) and not store.exists("/upfile/1041/8430/none.jpg")
    assert list(store.list("/upfile/1041/8430")) == ["10418430001.jpg"]
    assert 0 <= store.age(PATH) < 60 and store.age("/upfile/none.jpg") is None
    store.delete(PATH)
    with pytest.raises(MissingFileError, match="does not exist"):
        store.read(PATH)


def test_server_side_copy_backup(store: S3Storage) -> None:
    original = jpeg_bytes(noisy_photo())
    store.write(PATH, original)
    assert store.create_from(PATHS.backup, PATH, original) is True
    assert store.read(PATHS.backup) == original
    store.write(PATH, b"changed later")
    assert store.create_from(PATHS.backup, PATH, b"changed later") is False  # never overwritten
    assert store.read(PATHS.backup) == original


def test_backup_copy_refuses_a_source_that_changed(store: S3Storage) -> None:
    store.write(PATH, jpeg_bytes(noisy_photo(seed=1)))
    with pytest.raises(StorageError, match="changed while it was backed up"):
        store.create_from(PATHS.backup, PATH, jpeg_bytes(noisy_photo(seed=2)))  # the mount showed other bytes
    assert not store.exists(PATHS.backup)


def test_mount_with_s3_backups(mounted: Path, weed: Seaweed, bucket: str) -> None:
    """BACKUP_S3_BUCKET: originals through the mount, backups as S3 server-side copies."""
    photos = LocalStorage(mounted / "webroot")
    backups = S3Storage(weed.client(), bucket, "webroot")
    original = jpeg_bytes(noisy_photo())
    photos.write(PATH, original)
    clean = prepare_original(PATHS, photos, backups, Limits())
    assert clean.backup_created and clean.data == original
    backup = mounted / "webroot" / PATHS.backup.lstrip("/")
    deadline = time.monotonic() + 10  # the FUSE mount lists a new object after its metadata cache expires
    while not backup.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert backup.read_bytes() == original  # visible in the mount too
    photos.write(PATH, b"\xff\xd8\xff" + b"not ours")  # garbage over the original…
    with pytest.raises(Exception, match="JPEG"):
        prepare_original(PATHS, photos, backups, Limits())
    assert backups.read(PATHS.backup) == original  # …never reaches the backup


def test_direct_mode_processing(store: S3Storage, settings) -> None:
    """S3_MOUNT=s3://...: read, back up, write and verify with S3 calls only."""
    first = jpeg_bytes(noisy_photo(seed=3))
    store.write(PATH, first)
    other = "/upfile/1041/8430/10418430002.jpg"
    store.write(other, jpeg_bytes(noisy_photo(seed=4)))
    photos = [Photo(1, "10418430", PATH, 1), Photo(2, "10418430", other, 2)]
    outcomes = list(process_photos(photos, settings=settings, store=store, backups=store, detector=StubDetector()))
    assert all(o.ok for o in outcomes), [o.error for o in outcomes]
    assert store.read(PATHS.backup) == first
    masked = cv2.imdecode(np.frombuffer(store.read(PATHS.detect), np.uint8), cv2.IMREAD_COLOR)
    assert masked.shape == (480, 640, 3) and outcomes[0].sha256["detect"] == sha256(store.read(PATHS.detect))
    assert store.read(PATH) != first and outcomes[0].outputs["original"] == PATH  # banner-only website photo


def test_server_dying_mid_run(tmp_path: Path, settings) -> None:
    """Stop the server while a car is processed: the rest are errors with reasons, nothing half-written."""
    from tests.support import seaweed

    server = seaweed.start(tmp_path / "dying")
    try:
        client = server.client(max_attempts=2)
        client.create_bucket(Bucket="photos")
        store = S3Storage(client, "photos", "webroot")
        photos = []
        for n in range(1, 6):
            path = f"/upfile/1041/8430/10418430{n:03d}.jpg"
            store.write(path, jpeg_bytes(noisy_photo(seed=n)))
            photos.append(Photo(n, "10418430", path, n))

        outcomes = []
        for outcome in process_photos(photos, settings=settings, store=store, backups=store, detector=StubDetector()):
            outcomes.append(outcome)
            if len(outcomes) == 1:
                server.stop()  # the storage goes away in the middle of the car
        errors = [o for o in outcomes if not o.ok]
        assert outcomes[0].ok and errors, [o.error for o in outcomes]
        for outcome in errors:
            assert outcome.error.code == "storage" and outcome.error.transient
            assert "s3://photos/webroot/upfile/1041/8430/" in str(outcome.error)
        server.restart()
        _wait_until_readable(store, photos[0].path)
        for outcome in outcomes:
            detect = f"/upfile/1041/8430/.detect/{Path(outcome.photo.path).name}"
            if outcome.ok:
                assert store.exists(detect)
            if store.exists(detect):  # whatever exists is whole: PUTs are all or nothing
                data = store.read(detect)
                assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR).shape == (480, 640, 3)
        # The car task's retry, once the server is back: the failed photos go through.
        retry = [o.photo for o in errors]
        again = list(process_photos(retry, settings=settings, store=store, backups=store, detector=StubDetector()))
        assert all(o.ok for o in again), [o.error for o in again]
        for photo in photos:
            name = Path(photo.path).name
            assert store.read(f"/upfile/1041/8430/.backup/{name}") == jpeg_bytes(noisy_photo(seed=photo.file_id))
    finally:
        server.stop()


def _wait_until_readable(store: S3Storage, path: str, timeout: float = 60.0) -> None:
    """After a restart, volume servers re-register a little after the S3 endpoint answers."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        try:
            store.read(path)
            return
        except StorageError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_s3_backups_are_server_side_copies(mounted: Path, weed: Seaweed, bucket: str) -> None:
    """With BACKUP_S3_BUCKET the original's bytes are not uploaded again: CopyObject, If-None-Match."""
    client = weed.client()
    calls: list[tuple[str, dict]] = []
    client.meta.events.register(
        "provide-client-params.s3.*", lambda params, model, **_: calls.append((model.name, dict(params)))
    )
    photos = LocalStorage(mounted / "webroot")
    original = jpeg_bytes(noisy_photo(seed=7))
    photos.write(PATH, original)
    prepare_original(PATHS, photos, S3Storage(client, bucket, "webroot"), Limits())
    copies = [params for name, params in calls if name == "CopyObject"]
    assert [(c["Key"], c["CopySource"]["Key"], c["IfNoneMatch"]) for c in copies] == [
        ("webroot" + PATHS.backup, "webroot" + PATH, "*")
    ]
    assert not [name for name, _ in calls if name == "PutObject"]
    backup = mounted / "webroot" / PATHS.backup.lstrip("/")
    deadline = time.monotonic() + 10  # the FUSE mount lists a new object after its metadata cache expires
    while not backup.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert backup.read_bytes() == original


def test_direct_s3_photos_with_backups_in_another_bucket(weed: Seaweed, bucket: str, settings) -> None:
    """S3_MOUNT=s3://A/webroot with BACKUP_S3_BUCKET=B: the copy's source is A's object, not B's."""
    from platemask.storage import open_storage

    backup_bucket = f"{bucket}-backups"
    weed.client().create_bucket(Bucket=backup_bucket)
    settings = settings.with_overrides(
        s3_mount=f"s3://{bucket}/webroot", backup_s3_bucket=backup_bucket, backup_s3_key_prefix="archive"
    )
    store, backups = open_storage(settings, weed.client)
    original = jpeg_bytes(noisy_photo(seed=8))
    store.write(PATH, original)
    clean = prepare_original(PATHS, store, backups, Limits())
    assert clean.backup_created and clean.data == original
    body = weed.client().get_object(Bucket=backup_bucket, Key="archive" + PATHS.backup)["Body"].read()
    assert body == original
    assert not S3Storage(weed.client(), bucket, "webroot").exists(PATHS.backup)  # nothing in the photo bucket
