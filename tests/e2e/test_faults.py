"""Faults around the day: Chatwork failing, the site database down while planning.

Processing and notifying are different facts: a Chatwork outage never turns a processed day
red and never posts a summary twice; a failed plan leaves one red task that says why, and a
finishing task that says plainly there was nothing to finish.
"""

from __future__ import annotations

import datetime as dt
import json

import pendulum
import pytest

from tests.support.airflow_runs import task_states, trigger
from tests.support.site import Site, tracking_file
from tests.support.synthetic import make_car_photo, photo_jpeg

pytestmark = pytest.mark.e2e

DAY = dt.date(2026, 2, 3)
SCHEDULED = pendulum.datetime(2026, 2, 3, tz="Asia/Tokyo")


def _seed(site: Site, photos: int = 2) -> None:
    for branch in range(1, photos + 1):
        photo = make_car_photo(60 + branch, size=(960, 720))
        site.add(10418430, f"10418430{branch:03d}.jpg", photo_jpeg(photo.image), branch_no=branch, day=DAY)


@pytest.mark.parametrize(
    ("script", "messages", "status"),
    [
        pytest.param(lambda cw: cw.fail_next(500, times=20), 0, "failed", id="500-throughout"),
        pytest.param(lambda cw: cw.fail_next(429, times=2, headers={"Retry-After": "1"}), 1, "sent", id="429"),
        pytest.param(lambda cw: cw.delay_next(12), 1, "failed", id="no-answer"),
    ],
)
def test_chatwork_trouble_never_turns_the_day_red_nor_posts_twice(
    site: Site, chatwork, script, messages, status
) -> None:
    _seed(site)
    script(chatwork)
    run = trigger("plate_masking_daily", SCHEDULED)
    assert run.state == "success"
    assert set(task_states(run).values()) == {"success"}
    doc = tracking_file(DAY)
    assert {r["status"] for r in doc["processed"].values()} == {"done"}
    assert len(chatwork.messages) == messages  # the slow answer was posted by Chatwork: once
    [note] = doc["notifications"]
    assert note["run_id"] == run.run_id and note["status"] == status
    if status == "failed":
        assert "Chatwork" in note["error"]


def test_a_retried_finishing_task_does_not_post_the_summary_again(site: Site, chatwork) -> None:
    from platemask_airflow.daily import finish

    _seed(site, photos=1)
    run = trigger("plate_masking_daily", SCHEDULED)
    assert run.state == "success" and len(chatwork.messages) == 1
    counts = {"date": DAY.isoformat(), "skipped": 0, "refused": 0}
    result = finish(counts, run_id=run.run_id)  # what a retry of finish_day does
    assert result["chatwork"] == "already sent" and len(chatwork.messages) == 1
    assert [n["status"] for n in tracking_file(DAY)["notifications"]] == ["sent"]


def test_site_database_down_while_planning(site: Site, chatwork, monkeypatch: pytest.MonkeyPatch) -> None:
    _seed(site, photos=1)
    down = json.loads(site.connection_json()) | {"host": "127.0.0.1", "port": 1}  # nothing listens there
    monkeypatch.setenv("AIRFLOW_CONN_UPLOAD_DB", json.dumps(down))
    failed = trigger("plate_masking_daily", SCHEDULED, retries={"plan_uploads": 0})
    assert failed.state == "failed"
    states = task_states(failed)
    assert states[("plan_uploads", -1)] == "failed" and states[("finish_day", -1)] == "failed"
    assert _tries(failed, "finish_day") == 1  # it says there is nothing to finish, once; no retries
    [alert] = chatwork.messages  # the planning task's failure notifier; no summary of an unplanned day
    assert "could not be planned" in alert["body"] and "plan_uploads" in alert["body"]
    assert site.file("/upfile/1041/8430/10418430001.jpg") == site.uploads[0].original

    monkeypatch.setenv("AIRFLOW_CONN_UPLOAD_DB", site.connection_json())  # the database is back
    again = trigger("plate_masking_daily", SCHEDULED)
    assert again.state == "success"
    assert {r["status"] for r in tracking_file(DAY)["processed"].values()} == {"done"}


def _tries(dag_run, task_id: str) -> int:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        ti = session.scalar(
            select(TaskInstance).where(TaskInstance.run_id == dag_run.run_id, TaskInstance.task_id == task_id)
        )
        return ti.try_number


def test_a_misconfigured_chatwork_is_a_failed_send_not_a_red_day(site: Site, chatwork, monkeypatch) -> None:
    _seed(site, photos=1)
    monkeypatch.setenv("CHATWORK_ROOM_ID", "room-42")  # not the digits of a room id
    run = trigger("plate_masking_daily", SCHEDULED)
    assert run.state == "success" and chatwork.messages == []
    [note] = tracking_file(DAY)["notifications"]
    assert note["status"] == "failed" and "room_id must be the digits" in note["error"]
