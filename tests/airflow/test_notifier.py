"""ChatworkNotifier against the local Chatwork double, configured both supported ways."""

from __future__ import annotations

import json

import pytest

from platemask_airflow.chatwork import ChatworkHook
from platemask_airflow.notifiers import ChatworkNotifier
from tests.fakes.chatwork import FakeChatwork


@pytest.fixture
def chatwork():
    with FakeChatwork(token="notifier-token") as fake:
        yield fake


def _context() -> dict:
    from airflow.sdk import DAG

    return {"dag": DAG(dag_id="plate_masking_daily", schedule=None), "ds": "2026-02-03"}


def test_posts_rendered_text_with_environment_settings(chatwork, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATWORK_API_KEY", "notifier-token")
    monkeypatch.setenv("CHATWORK_ROOM_ID", "1001")
    monkeypatch.setenv("CHATWORK_API_URL", chatwork.url)
    ChatworkNotifier(text="{{ dag.dag_id }} failed for {{ ds }}")(_context())
    [message] = chatwork.messages
    assert (message["room_id"], message["body"]) == ("1001", "plate_masking_daily failed for 2026-02-03")
    assert message["headers"]["X-ChatWorkToken"] == "notifier-token"


def test_posts_with_an_airflow_connection(chatwork, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CHATWORK_API_KEY", "CHATWORK_ROOM_ID"):
        monkeypatch.delenv(name, raising=False)
    conn = {"conn_type": "http", "host": chatwork.url, "password": "notifier-token", "extra": {"room_id": "2002"}}
    monkeypatch.setenv("AIRFLOW_CONN_CHATWORK_DEFAULT", json.dumps(conn))
    ChatworkNotifier(text="hello")(_context())
    assert [(m["room_id"], m["body"]) for m in chatwork.messages] == [("2002", "hello")]


def test_silent_when_not_configured(chatwork, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CHATWORK_API_KEY", "CHATWORK_ROOM_ID", "AIRFLOW_CONN_CHATWORK_DEFAULT"):
        monkeypatch.delenv(name, raising=False)
    ChatworkNotifier(text="hello")(_context())
    assert chatwork.messages == []


def test_hook_prefers_the_spec_variables_over_the_connection(chatwork, monkeypatch: pytest.MonkeyPatch) -> None:
    conn = {"conn_type": "chatwork", "password": "conn-token", "extra": {"room_id": "2002"}}
    monkeypatch.setenv("AIRFLOW_CONN_CHATWORK_DEFAULT", json.dumps(conn))
    monkeypatch.setenv("CHATWORK_API_KEY", "notifier-token")
    monkeypatch.setenv("CHATWORK_ROOM_ID", "1001")
    monkeypatch.setenv("CHATWORK_API_URL", chatwork.url)
    client = ChatworkHook().get_conn()
    assert client is not None and client.room_id == "1001"
    client.post_message("from the variables")
    assert [(m["room_id"], m["headers"]["X-ChatWorkToken"]) for m in chatwork.messages] == [("1001", "notifier-token")]


@pytest.mark.parametrize(
    "conn",
    [
        pytest.param({"conn_type": "chatwork", "extra": {"room_id": "2002"}}, id="no-token"),
        pytest.param({"conn_type": "chatwork", "password": "t"}, id="no-room"),
        pytest.param(None, id="no-connection"),
    ],
)
def test_hook_without_usable_credentials_turns_chatwork_off(conn, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CHATWORK_API_KEY", "CHATWORK_ROOM_ID", "AIRFLOW_CONN_CHATWORK_DEFAULT"):
        monkeypatch.delenv(name, raising=False)
    if conn is not None:
        monkeypatch.setenv("AIRFLOW_CONN_CHATWORK_DEFAULT", json.dumps(conn))
    assert ChatworkHook().get_conn() is None
