from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from platemask.images import output_source, sha256
from platemask.pipeline import process_photos
from platemask.storage import LocalStorage
from platemask.uploads import Photo
from tests.support.photos import StubDetector, jpeg_bytes, noisy_photo

FOLDER = "/upfile/1041/8430"


def _run(settings, photos, detector=None, **kwargs):
    store = LocalStorage(settings.s3_mount)
    return list(
        process_photos(
            photos, settings=settings, store=store, backups=store, detector=detector or StubDetector(), **kwargs
        )
    )


def _read(root: Path, path: str) -> np.ndarray:
    return cv2.imread(str(root / path.lstrip("/")))


def test_first_photo_gets_two_outputs_from_one_detection(settings, put_photo, photo_root: Path) -> None:
    original = put_photo(f"{FOLDER}/10418430001.jpg")
    detector = StubDetector()
    [outcome] = _run(settings, [Photo(1, "10418430", f"{FOLDER}/10418430001.jpg", 1)], detector)
    assert outcome.ok, outcome.error
    assert detector.calls == 1  # two renders, one inference
    assert outcome.outputs == {"detect": f"{FOLDER}/.detect/10418430001.jpg", "original": f"{FOLDER}/10418430001.jpg"}
    assert (photo_root / f"{FOLDER}/.backup/10418430001.jpg".lstrip("/")).read_bytes() == original
    source = cv2.imdecode(np.frombuffer(original, np.uint8), cv2.IMREAD_COLOR).astype(int)
    masked = _read(photo_root, outcome.outputs["detect"]).astype(int)
    banner_only = _read(photo_root, outcome.outputs["original"]).astype(int)
    plate = (slice(300, 380), slice(100, 260))
    assert np.abs(masked[plate] - source[plate]).mean() > 40  # hidden in .detect/
    assert np.abs(banner_only[plate] - source[plate]).mean() < 6  # visible on the website (JPEG noise only)
    corner = (slice(400, 480), slice(450, 640))  # bottom-right: the banner
    assert np.abs(banner_only[corner] - source[corner]).mean() > 20
    assert output_source((photo_root / outcome.outputs["original"].lstrip("/")).read_bytes()) == sha256(original)


def test_other_photo_leaves_original_untouched(settings, put_photo, photo_root: Path) -> None:
    original = put_photo(f"{FOLDER}/10418430002.jpg")
    [outcome] = _run(settings, [Photo(2, "10418430", f"{FOLDER}/10418430002.jpg", 2)])
    assert outcome.ok and set(outcome.outputs) == {"detect"}
    assert (photo_root / f"{FOLDER}/10418430002.jpg".lstrip("/")).read_bytes() == original


@pytest.mark.parametrize("branch_no", [pytest.param(None, id="null"), pytest.param(3, id="three")])
def test_only_branch_one_is_first(settings, put_photo, photo_root: Path, branch_no) -> None:
    original = put_photo(f"{FOLDER}/x.jpg")
    [outcome] = _run(settings, [Photo(3, "10418430", f"{FOLDER}/x.jpg", branch_no)])
    assert "original" not in outcome.outputs
    assert (photo_root / f"{FOLDER}/x.jpg".lstrip("/")).read_bytes() == original


def test_rerun_gives_identical_bytes_and_one_banner(settings, put_photo, photo_root: Path) -> None:
    put_photo(f"{FOLDER}/10418430001.jpg")
    photo = Photo(1, "10418430", f"{FOLDER}/10418430001.jpg", 1)
    _run(settings, [photo])
    first = {p: (photo_root / p.lstrip("/")).read_bytes() for p in (photo.path, f"{FOLDER}/.detect/10418430001.jpg")}
    _run(settings, [photo])
    second = {p: (photo_root / p.lstrip("/")).read_bytes() for p in first}
    assert first == second  # restore-before-process: the banner is never drawn twice


def test_bad_photos_fail_alone(settings, put_photo) -> None:
    put_photo(f"{FOLDER}/good.jpg")
    put_photo(f"{FOLDER}/empty.jpg", b"")
    put_photo(f"{FOLDER}/cut.jpg", jpeg_bytes(noisy_photo())[:4000])
    photos = [
        Photo(1, "10418430", f"{FOLDER}/empty.jpg", 1),
        Photo(2, "10418430", f"{FOLDER}/missing.jpg", 2),
        Photo(3, "10418430", f"{FOLDER}/cut.jpg", 3),
        Photo(4, "10418430", "/upfile/../../etc/passwd", 4),
        Photo(5, "10418430", f"{FOLDER}/good.jpg", 5),
    ]
    outcomes = _run(settings, photos)
    assert [o.photo.file_id for o in outcomes] == [1, 2, 3, 4, 5]  # order kept
    reasons = [o.error.describe() if o.error else "ok" for o in outcomes]
    assert reasons[0].startswith("invalid_image: empty file")
    assert reasons[1].startswith("missing_file:")
    assert reasons[2].startswith("invalid_image: truncated JPEG")
    assert reasons[3].startswith("unsafe_path:")
    assert reasons[4] == "ok"


def test_exif_rotated_photo_is_processed_upright(settings, put_photo, photo_root: Path) -> None:
    import io

    from PIL import Image

    upright = noisy_photo(640, 480)
    upright[:, :320] = 255  # white left half, so a wrong rotation cannot pass
    upright[:, 320:] = 0
    stored = Image.fromarray(upright[:, :, ::-1]).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    stored.save(buffer, "JPEG", exif=exif.tobytes(), quality=95)
    put_photo(f"{FOLDER}/rotated.jpg", buffer.getvalue())
    [outcome] = _run(settings, [Photo(1, "10418430", f"{FOLDER}/rotated.jpg", 2)])
    assert outcome.ok
    out = _read(photo_root, outcome.outputs["detect"])
    assert out.shape == (480, 640, 3)  # upright, and verified against the upright size
    assert out[100:200, 50:250].mean() > 200 and out[100:200, 400:600].mean() < 60


def test_on_start_called_before_each_photo(settings, put_photo) -> None:
    put_photo(f"{FOLDER}/a.jpg")
    put_photo(f"{FOLDER}/b.jpg")
    started: list[int] = []
    _run(
        settings,
        [Photo(1, "10418430", f"{FOLDER}/a.jpg"), Photo(2, "10418430", f"{FOLDER}/b.jpg")],
        on_start=lambda p: started.append(p.file_id),
    )
    assert started == [1, 2]


def test_a_photo_replaced_while_it_is_processed_is_not_overwritten(settings, put_photo, photo_root: Path) -> None:
    path = f"{FOLDER}/10418430001.jpg"
    old = put_photo(path, seed=1)
    new = jpeg_bytes(noisy_photo(seed=2))

    class StaffUploadMidway(LocalStorage):
        """Staff upload a new version right after the masked copy was written."""

        def write(self, target: str, data: bytes) -> None:
            super().write(target, data)
            if "/.detect/" in target:
                (photo_root / path.lstrip("/")).write_bytes(new)

    store = StaffUploadMidway(settings.s3_mount)
    photo = Photo(1, "10418430", path, 1)
    [outcome] = process_photos([photo], settings=settings, store=store, backups=store, detector=StubDetector())
    assert outcome.error.code == "photo_changed" and outcome.error.transient
    assert (photo_root / path.lstrip("/")).read_bytes() == new  # the new upload is kept
    assert (photo_root / f"{FOLDER}/.backup/10418430001.jpg".lstrip("/")).read_bytes() == old

    [retried] = _run(settings, [photo])  # the task's retry: the new upload is backed up and processed
    assert retried.ok and retried.backup_history
    assert output_source((photo_root / path.lstrip("/")).read_bytes()) == sha256(new)
    assert (photo_root / f"{FOLDER}/.backup/10418430001.jpg".lstrip("/")).read_bytes() == new
