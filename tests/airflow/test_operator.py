"""PlateMaskOperator: arguments, templating, and how outcomes become task states."""

from __future__ import annotations

import subprocess
import sys
from unittest import mock

import pytest
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from platemask.daily import CarResult
from platemask_airflow.operators import PlateMaskOperator, car_label


def _operator(**kwargs) -> PlateMaskOperator:
    return PlateMaskOperator(task_id="mask_car", **{"car_ids": ["10418430"], "day": "2026-02-03", **kwargs})


@pytest.mark.parametrize(
    ("car_ids", "label"),
    [
        pytest.param(["10418430"], "10418430", id="one-car"),
        pytest.param(["10418430", "10418457", "10418460"], "10418430 +2 cars", id="batch"),
    ],
)
def test_car_label(car_ids: list[str], label: str) -> None:
    assert car_label(car_ids) == label


def test_building_the_operator_at_parse_time_imports_no_photo_code() -> None:
    # DAG processors build every operator on every parse: nothing of the photo work may load then.
    probe = (
        "import sys\n"
        "from platemask_airflow.operators import PlateMaskOperator\n"
        "op = PlateMaskOperator(task_id='mask_car', car_ids=['10418430'], day='2026-02-03', mask_style='blur')\n"
        "print(op.car_ids, op.day, op.mask_style)\n"
        "heavy = ('numpy', 'cv2', 'openvino', 'platemask.daily', 'platemask.pipeline')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, encoding="utf-8", check=True)
    assert result.stdout.splitlines()[-2:] == ["['10418430'] 2026-02-03 blur", "[]"]


def test_bad_style_refused_early() -> None:
    with pytest.raises(ValueError, match="mask_style must be one of fill, blur, pixelate, logo"):
        _operator(mask_style="sparkles")


def test_template_fields_render() -> None:
    op = _operator(car_ids="{{ params.car }}", day="{{ params.day }}", s3_mount="{{ params.root }}")
    assert set(PlateMaskOperator.template_fields) >= {"car_ids", "day", "s3_mount", "log_dir", "mask_style"}
    op.render_template_fields({"params": {"car": "10418457", "day": "2026-02-04", "root": "/mnt/photos"}})
    assert (op.car_ids, op.day, op.s3_mount) == ("10418457", "2026-02-04", "/mnt/photos")


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("S3_MOUNT", str(tmp_path / "mount"))
    monkeypatch.setenv("LOG_DIR", str(tmp_path / "logs"))


def test_execute_processes_cars_and_labels_the_task(env) -> None:
    context: dict = {}
    results = [CarResult("10418430", processed=3, verified=3, detections=2)]
    with mock.patch("platemask.daily.process_cars", return_value=results) as process:
        xcom = _operator().execute(context)
    [call] = process.call_args_list
    assert call.args[0] == ["10418430"]
    assert call.args[1].day.isoformat() == "2026-02-03"
    assert context["car_label"] == "10418430"
    assert xcom == [{"car_id": "10418430", "processed": 3, "verified": 3, "detections": 2, "errors": 0}]


def test_bad_input_fails_without_retry(env) -> None:
    results = [CarResult("10418430", processed=2, verified=1, errors=["/upfile/x.jpg: invalid_image: truncated"])]
    with mock.patch("platemask.daily.process_cars", return_value=results), pytest.raises(AirflowFailException) as err:
        _operator().execute({})
    assert "invalid_image: truncated" in str(err.value)


def test_storage_hiccup_is_retried(env) -> None:
    results = [CarResult("10418430", processed=1, errors=["/upfile/x.jpg: storage: EIO"], transient=True)]
    with mock.patch("platemask.daily.process_cars", return_value=results), pytest.raises(AirflowException) as err:
        _operator().execute({})
    assert not isinstance(err.value, AirflowFailException)


def test_missing_storage_setting_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("S3_MOUNT", raising=False)
    with pytest.raises(ValueError, match="S3_MOUNT is not set"):
        _operator().execute({})
