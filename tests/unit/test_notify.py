"""Unit tests of the Chatwork summary: its exact text, and posting it to a local fake Chatwork."""

from __future__ import annotations

import datetime
import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from platemask.config import Settings
from platemask.errors import ChatworkError
from platemask.notify import (
    MAX_MESSAGE_CHARS,
    CarOutcome,
    ChatworkClient,
    DaySummary,
    client_from_settings,
    format_summary,
    send_summary,
    summarise_run,
)
from tests.fakes.chatwork import FakeChatwork

TOKEN = "s3cr3t-T0KEN-abcdef0123456789"
ROOM = "123456789"
DAY = datetime.date(2026, 2, 3)

SPEC_EXAMPLE = """\
[info][title]🚗 ナンバープレート処理完了[/title]
📅 対象日: 2026-02-03
✅ 成功: 50件
❌ エラー: 2件
⏭️ スキップ: 100件

📊 車両別結果:
  ✅ 10418430: 5枚処理, 検出3件
  ⚠️ 10418457: 3枚処理, 検出1件
[/info]"""


def spec_summary() -> DaySummary:
    return DaySummary(
        day=DAY,
        succeeded=50,
        failed=2,
        skipped=100,
        cars=(
            CarOutcome("10418430", processed=5, detections=3, failed=0),
            CarOutcome("10418457", processed=3, detections=1, failed=1),
        ),
    )


def many_cars(count: int, failed_every: int = 1000) -> DaySummary:
    cars = tuple(
        CarOutcome(f"{10_000_000 + i}", processed=20, detections=19, failed=1 if i % failed_every == 7 else 0)
        for i in range(count)
    )
    failed = sum(car.failed for car in cars)
    return DaySummary(day=DAY, succeeded=20 * count - failed, failed=failed, skipped=0, cars=cars)


@pytest.fixture
def chatwork() -> Iterator[FakeChatwork]:
    with FakeChatwork(token=TOKEN) as fake:
        yield fake


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The client's waits between tries: urllib3's ``Retry`` sleeps through its module's ``time``."""
    waits: list[float] = []
    monkeypatch.setattr("urllib3.util.retry.time", SimpleNamespace(time=time.time, sleep=waits.append))
    return waits


@pytest.fixture
def client(chatwork: FakeChatwork, sleeps: list[float]) -> ChatworkClient:
    return ChatworkClient(api_key=TOKEN, room_id=ROOM, api_url=chatwork.url, timeout=5, retries=3)


def free_port() -> int:
    """A local port nothing listens on, so connecting to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- summarise_run: what the summary counts -----------------------------------------------------


def _record(file_id: int, car_id: str, status: str, detections: int = 0) -> dict:
    return {"file_id": file_id, "car_id": car_id, "status": status, "detections": detections}


def test_a_run_counts_photos_verified_and_failed_and_lines_up_its_cars() -> None:
    records = [
        _record(1, "10418457", "verified", 1),
        _record(2, "10418430", "done", 2),
        _record(3, "10418430", "verified", 1),
        _record(4, "10418457", "error", 5),  # the plates of a failed photo are not counted
    ]
    summary = summarise_run(DAY, records, skipped=100, refused=1)
    assert (summary.succeeded, summary.failed, summary.skipped, summary.processed) == (3, 2, 100, 5)
    assert summary.cars == (
        CarOutcome("10418430", processed=2, detections=3, failed=0),
        CarOutcome("10418457", processed=2, detections=1, failed=1),
    )
    assert [line for line in format_summary(summary).splitlines() if "枚処理" in line] == [
        "  ✅ 10418430: 2枚処理, 検出3件",
        "  ⚠️ 10418457: 2枚処理, 検出1件",
    ]


def test_a_run_with_nothing_to_do_is_not_sent(chatwork) -> None:
    summary = summarise_run(DAY, [], skipped=7)
    client = ChatworkClient(api_key=TOKEN, room_id=ROOM, api_url=chatwork.url)
    assert (summary.processed, send_summary(summary, client)) == (0, None)
    assert chatwork.requests == []


# --- format_summary ---------------------------------------------------------------------------


def test_format_matches_spec_example() -> None:
    assert format_summary(spec_summary()) == SPEC_EXAMPLE


def test_format_keeps_caller_order_when_it_fits() -> None:
    cars = (CarOutcome("3", 1, 0, failed=1), CarOutcome("1", 1, 1), CarOutcome("2", 2, 0, failed=2))
    text = format_summary(DaySummary(DAY, succeeded=1, failed=3, skipped=0, cars=cars))
    assert text.splitlines()[7:10] == [
        "  ⚠️ 3: 1枚処理, 検出0件",
        "  ✅ 1: 1枚処理, 検出1件",
        "  ⚠️ 2: 2枚処理, 検出0件",
    ]


def test_format_without_cars_ends_the_list_at_once() -> None:
    text = format_summary(DaySummary(DAY, succeeded=0, failed=0, skipped=7, cars=()))
    assert text.endswith("⏭️ スキップ: 7件\n\n📊 車両別結果:\n[/info]")


def test_format_truncates_thousands_of_cars_keeping_every_failure() -> None:
    summary = many_cars(5000)
    failed_ids = [car.car_id for car in summary.cars if not car.ok]
    assert len(failed_ids) == 5

    text = format_summary(summary)

    assert len(text) <= MAX_MESSAGE_CHARS
    lines = text.split("\n")
    assert lines[-1] == "[/info]"
    car_lines = lines[7:-2]
    assert lines[-2] == f"  …他{5000 - len(car_lines)}台"
    assert 100 < len(car_lines) < 5000
    # Every ⚠️ car is listed, and listed before the ✅ ones, each in the caller's order.
    assert [line.split()[1].rstrip(":") for line in car_lines[:5]] == failed_ids
    assert all(line.startswith("  ⚠️ ") for line in car_lines[:5])
    ok_ids = [line.split()[1].rstrip(":") for line in car_lines[5:]]
    assert ok_ids == [car.car_id for car in summary.cars if car.ok][: len(ok_ids)]
    assert all(line.startswith("  ✅ ") for line in car_lines[5:])


@pytest.mark.parametrize("shorter_by", [0, 1, 2, 30, 31, 500], ids=lambda n: f"limit-minus-{n}")
def test_format_never_exceeds_the_limit(shorter_by: int) -> None:
    summary = many_cars(40, failed_every=9)
    full_length = len(format_summary(summary, max_chars=10**6))
    limit = full_length - shorter_by

    text = format_summary(summary, max_chars=limit)

    assert len(text) <= limit
    lines = text.split("\n")
    if shorter_by == 0:
        assert "…他" not in text
    else:
        listed = len(lines) - 7 - 2
        assert lines[-2] == f"  …他{40 - listed}台"


def test_format_refuses_a_limit_too_small_for_the_header() -> None:
    with pytest.raises(ValueError, match="max_chars=50"):
        format_summary(many_cars(10), max_chars=50)


def test_summary_counts() -> None:
    summary = spec_summary()
    assert summary.processed == 52
    assert [car.ok for car in summary.cars] == [True, False]


# --- ChatworkClient ---------------------------------------------------------------------------


def test_post_sends_exact_form_and_token(chatwork: FakeChatwork, client: ChatworkClient) -> None:
    message_id = client.post_message(SPEC_EXAMPLE)

    assert message_id == "1"
    [message] = chatwork.messages
    assert message["room_id"] == ROOM
    assert message["token"] == TOKEN
    assert message["form"] == {"body": SPEC_EXAMPLE, "self_unread": "0"}
    assert message["headers"]["Content-Type"] == "application/x-www-form-urlencoded"
    assert client.post_message("second") == "2"


def test_api_url_trailing_slash_is_ignored(chatwork: FakeChatwork) -> None:
    client = ChatworkClient(api_key=TOKEN, room_id=ROOM, api_url=chatwork.url + "/")
    assert client.messages_url == f"{chatwork.url}/rooms/{ROOM}/messages"
    assert client.post_message("hi") == "1"


@pytest.mark.parametrize(
    ("status", "headers", "waits"),
    [
        pytest.param(429, {"X-RateLimit-Reset": "0"}, [1.0, 2.0], id="429-reset-passed"),
        pytest.param(429, {"Retry-After": "1"}, [1.0, 1.0], id="429-retry-after"),
        pytest.param(500, {}, [1.0, 2.0], id="500"),
        pytest.param(503, {}, [1.0, 2.0], id="503"),
    ],
)
def test_retries_passing_failures_then_succeeds(
    chatwork: FakeChatwork,
    client: ChatworkClient,
    sleeps: list[float],
    status: int,
    headers: dict[str, str],
    waits: list[float],
) -> None:
    chatwork.fail_next(status, times=2, headers=headers)

    assert client.post_message("hello") == "1"

    assert [request["status"] for request in chatwork.requests] == [status, status, 200]
    assert [message["body"] for message in chatwork.messages] == ["hello"]
    # Exponential backoff (1 s, 2 s), or Retry-After's 1 s each time.
    assert sleeps == waits


def test_rate_limit_reset_is_honoured_and_capped(chatwork: FakeChatwork, sleeps: list[float]) -> None:
    client = ChatworkClient(
        api_key=TOKEN,
        room_id=ROOM,
        api_url=chatwork.url,
        retries=2,
        backoff=0.5,
        max_delay=30,
    )
    now = time.time()
    chatwork.fail_next(429, headers={"X-RateLimit-Reset": str(int(now) + 10)})
    chatwork.fail_next(429, headers={"X-RateLimit-Reset": str(int(now) + 3600)})

    assert client.post_message("hello") == "1"

    assert 8 <= sleeps[0] <= 10.5
    assert sleeps[1] == 30


def test_gives_up_after_the_retries(chatwork: FakeChatwork, client: ChatworkClient, sleeps: list[float]) -> None:
    chatwork.fail_next(500, times=10, body={"errors": ["Chatwork is down"]})

    with pytest.raises(ChatworkError) as caught:
        client.post_message("hello")

    message = str(caught.value)
    assert ROOM in message
    assert "after 4 attempts" in message
    assert "HTTP 500: Chatwork is down" in message
    assert TOKEN not in message
    assert len(chatwork.requests) == 4
    assert sleeps == [1.0, 2.0, 4.0]


@pytest.mark.parametrize(
    ("status", "api_key", "expected"),
    [
        pytest.param(400, TOKEN, "HTTP 400: Bad Request", id="400"),
        pytest.param(403, TOKEN, "HTTP 403: Forbidden", id="403"),
        pytest.param(None, "wrong-token-0000", "HTTP 401: Invalid API token", id="401-wrong-token"),
    ],
)
def test_client_errors_are_not_retried(
    chatwork: FakeChatwork, sleeps: list[float], status: int | None, api_key: str, expected: str
) -> None:
    client = ChatworkClient(api_key=api_key, room_id=ROOM, api_url=chatwork.url)
    if status is not None:
        chatwork.fail_next(status)

    with pytest.raises(ChatworkError) as caught:
        client.post_message("hello")

    message = str(caught.value)
    assert expected in message
    assert f"room {ROOM}" in message
    assert api_key not in message
    assert TOKEN not in message
    assert len(chatwork.requests) == 1
    assert sleeps == []
    assert chatwork.messages == []


def test_token_echoed_by_the_server_is_redacted(chatwork: FakeChatwork, client: ChatworkClient) -> None:
    chatwork.fail_next(400, body={"errors": [f"bad request with token {TOKEN}"]})

    with pytest.raises(ChatworkError) as caught:
        client.post_message("hello")

    assert TOKEN not in str(caught.value)
    assert "token ***" in str(caught.value)


def test_connection_refused_raises_after_retries(sleeps: list[float], caplog: pytest.LogCaptureFixture) -> None:
    client = ChatworkClient(
        api_key=TOKEN,
        room_id=ROOM,
        api_url=f"http://127.0.0.1:{free_port()}/v2",
        retries=2,
    )

    with caplog.at_level(logging.DEBUG), pytest.raises(ChatworkError) as caught:
        client.post_message("hello")

    message = str(caught.value)
    assert "after 3 attempts" in message
    assert "ConnectionError" in message
    assert ROOM in message
    assert sleeps == [1.0, 2.0]
    assert TOKEN not in caplog.text
    assert "trying again" in caplog.text


def test_read_timeout_is_not_retried(sleeps: list[float]) -> None:
    # A socket that listens but never answers: the request went out, so it may have been posted.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        client = ChatworkClient(
            api_key=TOKEN,
            room_id=ROOM,
            api_url=f"http://127.0.0.1:{port}/v2",
            timeout=0.2,
            retries=3,
        )
        with pytest.raises(
            ChatworkError, match=r"no answer .*ReadTimeout.*may have been posted, so it is not sent again"
        ):
            client.post_message("hello")
    assert sleeps == []


def test_a_slow_answer_is_never_posted_twice(chatwork: FakeChatwork, sleeps: list[float]) -> None:
    chatwork.delay_next(1.0)  # Chatwork takes the message, but answers after the client gave up
    client = ChatworkClient(api_key=TOKEN, room_id=ROOM, api_url=chatwork.url, timeout=0.3)
    with pytest.raises(ChatworkError, match="may have been posted"):
        client.post_message("hello")
    time.sleep(1.0)
    assert [m["body"] for m in chatwork.messages] == ["hello"] and len(chatwork.requests) == 1


def test_success_without_message_id_is_an_error(chatwork: FakeChatwork, client: ChatworkClient) -> None:
    chatwork.fail_next(200, body={"unexpected": True})
    with pytest.raises(ChatworkError, match=f"room {ROOM}: HTTP 200 without a message_id"):
        client.post_message("hello")


def test_token_never_in_repr_or_logs(
    chatwork: FakeChatwork, client: ChatworkClient, caplog: pytest.LogCaptureFixture
) -> None:
    chatwork.fail_next(429, headers={"Retry-After": "0"})
    with caplog.at_level(logging.DEBUG):
        client.post_message("hello")
    assert TOKEN not in repr(client)
    assert ROOM in repr(client)
    assert TOKEN not in caplog.text
    assert f"to room {ROOM}" in caplog.text


def test_session_is_built_on_first_use(chatwork: FakeChatwork) -> None:
    client = ChatworkClient(api_key=TOKEN, room_id=ROOM, api_url=chatwork.url)
    assert "session" not in vars(client)
    client.post_message("hello")
    assert "session" in vars(client)


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        pytest.param({"api_key": ""}, "api_key", id="empty-key"),
        pytest.param({"api_key": "   "}, "api_key", id="blank-key"),
        pytest.param({"api_key": "abc\r\nX-Evil: 1"}, "api_key", id="key-with-newline"),
        pytest.param({"room_id": ""}, "room_id", id="empty-room"),
        pytest.param({"room_id": "rid123"}, "room_id", id="room-not-digits"),
        pytest.param({"room_id": "１２３"}, "room_id", id="room-fullwidth-digits"),
        pytest.param({"api_url": "api.chatwork.com/v2"}, "api_url", id="url-without-scheme"),
        pytest.param({"retries": -1}, "retries", id="negative-retries"),
        pytest.param({"timeout": 0}, "timeout", id="zero-timeout"),
    ],
)
def test_arguments_are_validated_early(kwargs: dict[str, object], expected: str) -> None:
    arguments: dict[str, object] = {"api_key": TOKEN, "room_id": ROOM, **kwargs}
    with pytest.raises(ChatworkError, match=expected) as caught:
        ChatworkClient(**arguments)  # type: ignore[arg-type]
    assert TOKEN not in str(caught.value)


@pytest.mark.parametrize(
    "body",
    [pytest.param("", id="empty"), pytest.param("x" * 65_536, id="over-chatwork-limit")],
)
def test_unsendable_bodies_are_refused_before_sending(
    chatwork: FakeChatwork, client: ChatworkClient, body: str
) -> None:
    with pytest.raises(ChatworkError, match=f"room {ROOM}"):
        client.post_message(body)
    assert chatwork.requests == []


# --- send_summary and client_from_settings -----------------------------------------------------


def test_send_summary_posts_the_formatted_summary(chatwork: FakeChatwork, client: ChatworkClient) -> None:
    assert send_summary(spec_summary(), client) == "1"
    assert [message["body"] for message in chatwork.messages] == [SPEC_EXAMPLE]


@pytest.mark.parametrize(
    ("summary", "with_client"),
    [
        pytest.param(DaySummary(DAY, succeeded=0, failed=0, skipped=100), True, id="nothing-processed"),
        pytest.param(spec_summary(), False, id="no-client"),
    ],
)
def test_send_summary_sends_nothing(
    chatwork: FakeChatwork,
    client: ChatworkClient,
    summary: DaySummary,
    with_client: bool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="platemask.notify"):
        assert send_summary(summary, client if with_client else None) is None
    assert chatwork.requests == []
    assert "not sent" in caplog.text


def test_send_summary_sends_when_only_errors(chatwork: FakeChatwork, client: ChatworkClient) -> None:
    summary = DaySummary(DAY, succeeded=0, failed=1, skipped=0, cars=(CarOutcome("10418457", 1, 0, failed=1),))
    assert send_summary(summary, client) == "1"
    assert "  ⚠️ 10418457: 1枚処理, 検出0件" in chatwork.messages[0]["body"]


@pytest.mark.parametrize(
    ("key", "room"),
    [
        pytest.param(None, ROOM, id="no-key"),
        pytest.param(TOKEN, None, id="no-room"),
        pytest.param(None, None, id="neither"),
    ],
)
def test_client_from_settings_disabled(key: str | None, room: str | None) -> None:
    settings = Settings(s3_mount="/mnt", log_dir=Path("/tmp/logs"), chatwork_api_key=key, chatwork_room_id=room)
    assert client_from_settings(settings) is None


def test_client_from_env_posts_to_the_configured_url(chatwork: FakeChatwork) -> None:
    settings = Settings.from_env(
        {"CHATWORK_API_KEY": TOKEN, "CHATWORK_ROOM_ID": ROOM, "CHATWORK_API_URL": chatwork.url + "/"}
    )

    client = client_from_settings(settings)

    assert client is not None
    assert client.room_id == ROOM
    assert client.api_url == chatwork.url
    assert send_summary(spec_summary(), client) == "1"
    assert chatwork.messages[0]["token"] == TOKEN


def test_client_from_settings_defaults_to_chatwork() -> None:
    client = client_from_settings(Settings.from_env({"CHATWORK_API_KEY": TOKEN, "CHATWORK_ROOM_ID": ROOM}))
    assert client is not None
    assert client.messages_url == f"https://api.chatwork.com/v2/rooms/{ROOM}/messages"
