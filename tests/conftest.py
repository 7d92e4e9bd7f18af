"""Shared fixtures. Airflow's environment is set here, before anything imports airflow."""

from __future__ import annotations

import io
import itertools
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from pathlib import Path

import numpy as np
import pytest

from tests.support import seaweed

_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="platemask-airflow-"))
_REPO = Path(__file__).parents[1]
os.environ.update(
    AIRFLOW_HOME=str(_AIRFLOW_HOME),
    AIRFLOW__CORE__DAGS_FOLDER=str(_REPO / "dags"),
    AIRFLOW__CORE__PLUGINS_FOLDER=str(_REPO / "plugins"),
    AIRFLOW__CORE__LOAD_EXAMPLES="False",
    AIRFLOW__CORE__UNIT_TEST_MODE="True",
    AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{_AIRFLOW_HOME / 'airflow.db'}",
    AIRFLOW__LOGGING__BASE_LOG_FOLDER=str(_AIRFLOW_HOME / "logs"),
    YOLO_AUTOINSTALL="False",
    YOLO_OFFLINE="True",
    YOLO_CONFIG_DIR=str(_AIRFLOW_HOME / "ultralytics"),
)
for _name in ("CHATWORK_API_KEY", "CHATWORK_ROOM_ID", "BACKUP_S3_BUCKET", "PLATE_MODEL"):
    os.environ.pop(_name, None)


def noisy_photo(width: int = 640, height: int = 480, seed: int = 0) -> np.ndarray:
    """A BGR image with gradients and noise, so JPEG changes are measurable."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1), (x + y) % 256], axis=-1)
    noise = rng.integers(-20, 20, size=(height, width, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def jpeg_bytes(image: np.ndarray, quality: int = 92) -> bytes:
    """Encode BGR pixels as a plain JPEG (no EXIF)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image[:, :, ::-1]).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


class StubDetector:
    """Stands in for the model where a test is about the rules, not the model: fixed boxes."""

    def __init__(
        self, boxes: Sequence[tuple[float, float, float, float]] = ((100, 300, 260, 380),), conf: float = 0.9
    ) -> None:
        from platemask.config import DetectOptions
        from platemask.detect import Detection

        self.options = DetectOptions()
        self.detections = [Detection(box=tuple(map(float, b)), conf=conf) for b in boxes]
        self.calls = 0

    def load_async(self) -> Future[None]:
        future: Future[None] = Future()
        future.set_result(None)
        return future

    def detect(self, images: Sequence[np.ndarray], *, conf: float | None = None) -> list[list]:
        if conf is not None:  # the second look's closer look at a crop: this model sees nothing more
            return [[] for _ in images]
        self.calls += len(images)
        return [list(self.detections) for _ in images]


@pytest.fixture
def photo_root(tmp_path: Path) -> Path:
    """An empty S3_MOUNT."""
    root = tmp_path / "mount"
    root.mkdir()
    return root


@pytest.fixture
def settings(photo_root: Path, tmp_path: Path):
    """Settings for a temporary S3_MOUNT and LOG_DIR."""
    from platemask.config import Settings

    return Settings.from_env({"S3_MOUNT": str(photo_root), "LOG_DIR": str(tmp_path / "logs")})


@pytest.fixture
def put_photo(photo_root: Path) -> Callable[..., bytes]:
    """Write a photo under the mount: ``put_photo("/upfile/1041/8430/x.jpg", data=None, seed=0)``."""

    def put(path: str, data: bytes | None = None, *, seed: int = 0, size: tuple[int, int] = (640, 480)) -> bytes:
        if data is None:
            data = jpeg_bytes(noisy_photo(*size, seed=seed))
        target = photo_root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        return data

    return put


# A real S3 server (SeaweedFS), started on first use and stopped at the end of the session.
_buckets = itertools.count()


@pytest.fixture(scope="session")
def weed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[seaweed.Seaweed]:
    """SeaweedFS with its S3 endpoint on loopback."""
    server = seaweed.start(tmp_path_factory.mktemp("seaweed"))
    yield server
    server.stop()


@pytest.fixture
def bucket(weed: seaweed.Seaweed) -> str:
    """A fresh, empty bucket."""
    name = f"photos-{next(_buckets)}"
    weed.client().create_bucket(Bucket=name)
    return name


@pytest.fixture
def mounted(weed: seaweed.Seaweed, bucket: str, tmp_path: Path) -> Iterator[Path]:
    """The bucket mounted with FUSE, as s3fs mounts it on a production worker."""
    if not seaweed.fuse_available():
        pytest.skip("FUSE mounts need root and /dev/fuse on this machine")
    with weed.mount(bucket, tmp_path / "mnt") as path:
        yield path
