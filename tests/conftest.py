"""Shared fixtures. Airflow's environment is set here, before anything imports airflow."""

from __future__ import annotations

import itertools
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support import seaweed
from tests.support.photos import jpeg_bytes, noisy_photo

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


#: Markers of the tests that may load a real model in this process (e2e and browser runs do).
_MAY_LOAD_MODELS = ("inference", "model", "e2e", "browser")


@pytest.fixture(autouse=True)
def _real_models_only_where_marked(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """A test that loads a real model must say so (``@pytest.mark.inference``), so that the fast
    lane (``make test-fast``) really leaves every model out; an unmarked load fails the test."""
    if any(request.node.get_closest_marker(name) for name in _MAY_LOAD_MODELS):
        return
    import platemask.detect
    import platemask.second_look

    def refuse(self, *args, **kwargs):
        raise AssertionError(f"{request.node.nodeid} loads a real model: mark it @pytest.mark.inference")

    for owner in (platemask.detect.PlateDetector, platemask.second_look.SecondLook):
        monkeypatch.setattr(owner, "_load", refuse)
    # A detector built here binds the refusing loader: it must not stay in the process-wide
    # caches, where a later test that may load models would get it.
    monkeypatch.setattr(platemask.detect, "_DETECTORS", dict(platemask.detect._DETECTORS))
    monkeypatch.setattr(platemask.second_look, "_LOOKS", dict(platemask.second_look._LOOKS))


@pytest.fixture
def photo_root(tmp_path: Path) -> Path:
    """An empty S3_MOUNT."""
    root = tmp_path / "mount"
    root.mkdir()
    return root


@pytest.fixture
def settings(photo_root: Path, tmp_path: Path):
    """Settings for a temporary S3_MOUNT and LOG_DIR.

    The checks on large boxes and the ``large_mask`` reason (platemask.masking) are off: these
    settings go with StubDetector,
    a model that is always right, and the tests they serve are about the rules of a day. The
    checks have tests of their own (tests/unit/test_masking.py), and the end-to-end tests run
    with the defaults.
    """
    from dataclasses import replace

    from platemask.config import MaskChecks, Settings

    settings = Settings.from_env({"S3_MOUNT": str(photo_root), "LOG_DIR": str(tmp_path / "logs")})
    return replace(settings, checks=MaskChecks(large=1.0, zoom_out=False, review_area=1.0))


@pytest.fixture(scope="session")
def platedet_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    """platedet's model as OpenVINO IR: the default model before platemask's own (no torch needed)."""
    from platemask.detect import platedet_to_openvino

    return str(platedet_to_openvino(tmp_path_factory.mktemp("platedet") / "platedet_openvino_model"))


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


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """An embedded PostgreSQL 16 (pgserver), stopped at the end of the session."""
    import logging

    import pgserver

    pgdata = tmp_path_factory.mktemp("pgdata")
    pgdata.parent.chmod(0o755)  # as root, pgserver runs postgres as its own user, which must reach the folder
    server = pgserver.get_server(pgdata, cleanup_mode="stop")
    yield server
    server.cleanup()
    logging.getLogger("pgserver").disabled = True  # its exit hook logs after pytest closed the streams


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
