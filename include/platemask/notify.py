"""Spec rule 6, the daily Chatwork summary: what it counts, its exact text, when it is sent, and
a small client that posts it.

Chatwork API v2: ``POST {api_url}/rooms/{room_id}/messages`` with the token in the
``X-ChatWorkToken`` header and a form-encoded ``body``; the answer is ``{"message_id": "..."}``,
an error is ``{"errors": ["..."]}``, and too many calls get HTTP 429 with ``X-RateLimit-Reset``
(Unix time). Nothing here imports Airflow: the DAG's last task calls :func:`send_summary`.
"""

from __future__ import annotations

import datetime
import email.utils
import functools
import hashlib
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import requests
import tenacity
import urllib3

from platemask.config import DEFAULT_CHATWORK_API_URL, Settings
from platemask.errors import ChatworkError, is_infrastructure
from platemask.tracking import site_now, stamp

if TYPE_CHECKING:
    from platemask.tracking import DayTracking, Record

__all__ = [
    "DEFAULT_API_URL",
    "MAX_MESSAGE_CHARS",
    "CarOutcome",
    "ChatworkClient",
    "DaySummary",
    "Quality",
    "chatwork_configured",
    "client_from_settings",
    "deliver_summary",
    "fit_lines",
    "format_summary",
    "post_once",
    "send_summary",
    "summarise_run",
]

log = logging.getLogger(__name__)

DEFAULT_API_URL = DEFAULT_CHATWORK_API_URL

#: Longest summary we send. Chatwork's API definition (chatwork/api, RAML/api-ja.raml) gives
#: ``body`` a maxLength of 65535 without saying whether it counts characters or UTF-8 bytes
#: (65535 is also MySQL's TEXT limit in bytes). Our text is emoji and Japanese, up to 4 bytes a
#: character, so 16000 characters stays under 65535 bytes whichever way it is counted; that is
#: still about 500 car lines, more than anyone reads in a chat message.
MAX_MESSAGE_CHARS = 16_000

#: Chatwork's own limit on ``body`` (see above); longer bodies are refused before sending.
_API_MAX_BODY = 65_535
_TITLE = "[info][title]🚗 ナンバープレート処理完了[/title]"
_END = "[/info]"


@dataclass(frozen=True)
class CarOutcome:
    """What one car's photos came to in this run."""

    car_id: str
    processed: int  # photos of this car processed in this run (N枚処理)
    detections: int  # plates detected in them (検出M件)
    failed: int = 0  # photos of this car that ended in error

    @property
    def ok(self) -> bool:
        """True when none of the car's photos failed (✅ rather than ⚠️)."""
        return self.failed == 0


@dataclass(frozen=True)
class Quality:
    """How the verified photos of a run look: the figures a reader checks the masking by."""

    photos: int  # verified photos these figures are about
    to_review: int  # 要確認: photos with a non-empty ``review`` (platemask.review)
    plates: int  # masks drawn on them
    without_plate: int  # photos on which nothing was masked
    p95_ms: int  # 95th percentile of the work time per photo

    @property
    def plates_per_photo(self) -> float:
        """Masks per verified photo (0 when there are none)."""
        return self.plates / self.photos if self.photos else 0.0

    def lines(self) -> list[str]:
        """The summary's added lines, after スキップ (SPEC section 6: the review line comes first)."""
        return [
            f"🔍 要確認: {self.to_review}件",
            f"🔢 1枚あたり検出: {self.plates_per_photo:.2f}件 (検出なし {self.without_plate}枚)",
            f"⏱️ 処理時間 p95: {self.p95_ms}ms/枚",
        ]


@dataclass(frozen=True)
class DaySummary:
    """The counts of one run, in photos, and the per-car lines of the summary."""

    day: datetime.date
    succeeded: int  # 成功: photos processed and verified in this run
    failed: int  # エラー: photos that ended in error
    skipped: int  # スキップ: photos not processed because already done
    cars: tuple[CarOutcome, ...] = ()
    quality: Quality | None = None  # the added lines after スキップ, when known
    #: Of ``failed``, photos the platform failed (model, memory, settings, storage, a dead task):
    #: the photos are not at fault, and the operators' fix is a different one.
    infrastructure: int = 0
    #: The day's "Photos to check" page in the Airflow UI, linked when there are photos to check.
    photos_to_check_url: str | None = None

    @property
    def processed(self) -> int:
        """Photos this run worked on; spec rule 6 sends a message only when this is at least 1."""
        return self.succeeded + self.failed


def summarise_run(
    day: datetime.date, records: Sequence[Record], *, skipped: int, refused: int = 0, quality: Quality | None = None
) -> DaySummary:
    """The summary of the records one run worked on, counted the way spec rule 6 counts.

    成功 is a photo of this run that reached ``verified`` (or ``done``), エラー one that ended in
    ``error``, plus the rows refused at planning (a car id that cannot name a folder), which never
    reached a car task but did fail. A car line counts its photos and the plates of those that
    did not fail.
    """
    cars: dict[str, list[Record]] = {}
    for record in records:
        cars.setdefault(record["car_id"], []).append(record)
    outcomes = tuple(
        CarOutcome(
            car_id=car_id,
            processed=len(rs),
            detections=sum(r.get("detections", 0) for r in rs if r["status"] != "error"),
            failed=sum(r["status"] == "error" for r in rs),
        )
        for car_id, rs in sorted(cars.items())
    )
    failed = sum(c.failed for c in outcomes)
    return DaySummary(
        day=day,
        succeeded=len(records) - failed,
        failed=failed + refused,
        skipped=skipped,
        cars=outcomes,
        quality=quality,
        infrastructure=sum(r["status"] == "error" and is_infrastructure(r.get("error", "")) for r in records),
    )


def _car_line(car: CarOutcome) -> str:
    mark = "✅" if car.ok else "⚠️"
    return f"  {mark} {car.car_id}: {car.processed}枚処理, 検出{car.detections}件"


def format_summary(summary: DaySummary, max_chars: int = MAX_MESSAGE_CHARS) -> str:
    """Return the spec rule 6 message, dropping ✅ car lines before ⚠️ ones to fit ``max_chars``."""
    head = [
        _TITLE,
        f"📅 対象日: {summary.day.isoformat()}",
        f"✅ 成功: {summary.succeeded}件",
        f"❌ エラー: {summary.failed}件",
        *([_infrastructure_line(summary.infrastructure)] if summary.infrastructure else []),
        f"⏭️ スキップ: {summary.skipped}件",
        *(summary.quality.lines() if summary.quality else ()),
        *([f"🔗 要確認の写真: {summary.photos_to_check_url}"] if _link_wanted(summary) else []),
        "",
        "📊 車両別結果:",
    ]
    full = "\n".join([*head, *(_car_line(car) for car in summary.cars), _END])
    if len(full) <= max_chars:
        return full
    # Too long: failures matter most, so every ⚠️ car gets a line before any ✅ car does.
    ranked = [car for car in summary.cars if not car.ok] + [car for car in summary.cars if car.ok]
    return fit_lines(head, [_car_line(car) for car in ranked], _END, max_chars)


def fit_lines(head: Sequence[str], lines: Sequence[str], end: str, max_chars: int = MAX_MESSAGE_CHARS) -> str:
    """``head``, as many of ``lines`` as fit in ``max_chars`` (the most important first), a
    "…他N台" line for the rest, and ``end``: a message Chatwork accepts, however many cars."""
    full = "\n".join([*head, *lines, end])
    if len(full) <= max_chars:
        return full
    # Reserve room for the "…他N台" line with the widest N it could show.
    used = len("\n".join(head)) + len(_more_line(len(lines))) + len(end) + 2
    if used > max_chars:
        raise ValueError(f"max_chars={max_chars} is too small for even the message's header")
    listed: list[str] = []
    for line in lines:
        if used + len(line) + 1 > max_chars:
            break
        listed.append(line)
        used += len(line) + 1
    return "\n".join([*head, *listed, _more_line(len(lines) - len(listed)), end])


def _link_wanted(summary: DaySummary) -> bool:
    return bool(summary.photos_to_check_url and summary.quality and summary.quality.to_review)


def _infrastructure_line(photos: int) -> str:
    return f"  🛠️ うち基盤の障害: {photos}件 (モデル・メモリ・設定・ストレージ。写真の問題ではありません)"


def _more_line(omitted: int) -> str:
    return f"  …他{omitted}台"


class ChatworkClient:
    """Posts messages to one Chatwork room.

    :param api_key: Chatwork API token; it never appears in errors, logs or ``repr``.
    :param room_id: the room's id, the digits after ``#!rid`` in the room's address.
    :param api_url: API base URL (``CHATWORK_API_URL``), for proxies and tests.
    :param timeout: seconds to wait for a connection and for the answer.
    :param retries: extra tries after a 429, a 5xx or a connection that could not be made.
    :param backoff: first wait between tries in seconds, doubled each time.
    :param max_delay: longest single wait, also for ``X-RateLimit-Reset``/``Retry-After``.
    :param session: a ready ``requests.Session``; by default one is built on first use.
    :param sleep: how to wait between tries (tests pass a recorder).
    """

    def __init__(
        self,
        *,
        api_key: str,
        room_id: str,
        api_url: str = DEFAULT_API_URL,
        timeout: float = 10.0,
        retries: int = 4,
        backoff: float = 1.0,
        max_delay: float = 30.0,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        api_key = (api_key or "").strip()
        room_id = str(room_id or "").strip()
        if not api_key:
            raise ChatworkError("api_key is empty: set CHATWORK_API_KEY to a Chatwork API token")
        # A control character or space would make requests reject the header with a message that
        # quotes the value, i.e. the token; refuse it here without echoing it.
        if not api_key.isascii() or not api_key.isprintable() or " " in api_key:
            raise ChatworkError("api_key contains characters that are not allowed in an HTTP header")
        if not room_id:
            raise ChatworkError("room_id is empty: set CHATWORK_ROOM_ID to the id of a Chatwork room")
        if not (room_id.isascii() and room_id.isdigit()):
            raise ChatworkError(f"room_id must be the digits of a Chatwork room id, not {room_id!r}")
        if not re.match(r"^https?://[^/\s]+", api_url or ""):
            raise ChatworkError(f"api_url must be an http(s) URL, not {api_url!r}")
        if timeout <= 0:
            raise ChatworkError(f"timeout must be positive, not {timeout}")
        if retries < 0:
            raise ChatworkError(f"retries must be 0 or more, not {retries}")
        if backoff < 0 or max_delay < 0:
            raise ChatworkError(f"backoff and max_delay must be 0 or more, not {backoff} and {max_delay}")
        self._api_key = api_key
        self.room_id = room_id
        self.api_url = api_url.rstrip("/")
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_delay = max_delay
        self.sleep = sleep
        self._given_session = session

    def __repr__(self) -> str:
        return f"ChatworkClient(room_id={self.room_id!r}, api_url={self.api_url!r}, api_key='***')"

    @functools.cached_property
    def session(self) -> requests.Session:
        """The HTTP session, built on first use so that constructing a client does no I/O."""
        return self._given_session if self._given_session is not None else requests.Session()

    @property
    def messages_url(self) -> str:
        """Where messages to this room are posted."""
        return f"{self.api_url}/rooms/{self.room_id}/messages"

    def room(self) -> dict[str, Any]:
        """The room as Chatwork describes it (``GET /rooms/{room_id}``), tried once.

        A cheap authenticated call that posts nothing: it proves the token and that its account
        is in the room (``role`` says whether it may post: ``readonly`` may not).
        """
        headers = {"X-ChatWorkToken": self._api_key, "Accept": "application/json"}
        url = f"{self.api_url}/rooms/{self.room_id}"
        try:
            response = self.session.get(url, headers=headers, timeout=self.timeout)
        except requests.RequestException as exc:
            raise ChatworkError(self._redact(f"cannot reach {self.api_url} ({type(exc).__name__})")) from None
        if response.status_code != 200:
            raise ChatworkError(
                f"Chatwork refused room {self.room_id}: HTTP {response.status_code}: {self._error_text(response)}"
            )
        try:
            return dict(response.json())
        except (ValueError, TypeError):
            raise ChatworkError(
                f"Chatwork room {self.room_id}: the answer is not a room: {response.text[:200]!r}"
            ) from None

    def post_message(self, body: str, *, self_unread: bool = False) -> str:
        """Post ``body`` to the room and return Chatwork's message id.

        429 (after the wait it asks for), 5xx and connections that never reached the server are
        tried again with backoff; an answer that never came is not, as the message may be posted.
        """
        if not body:
            raise ChatworkError(f"Chatwork room {self.room_id}: the message body is empty")
        if len(body) > _API_MAX_BODY:
            raise ChatworkError(
                f"Chatwork room {self.room_id}: the message has {len(body)} characters, "
                f"more than Chatwork's {_API_MAX_BODY}"
            )
        form = {"body": body, "self_unread": "1" if self_unread else "0"}
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(_PassingError),
            stop=tenacity.stop_after_attempt(self.retries + 1),
            wait=self._wait,
            sleep=self.sleep,
            before_sleep=self._log_retry,
            reraise=True,
        )
        try:
            return retrying(self._post_once, form)
        except _PassingError as failure:
            raise ChatworkError(
                f"Chatwork did not take the message for room {self.room_id} after {self.retries + 1} attempts: "
                f"{failure.problem}"
            ) from None

    def _post_once(self, form: dict[str, str]) -> str:
        """One POST: the message id, a :class:`_PassingError` worth retrying, or a ChatworkError."""
        headers = {"X-ChatWorkToken": self._api_key, "Accept": "application/json"}
        try:
            response = self.session.post(self.messages_url, data=form, headers=headers, timeout=self.timeout)
        except requests.RequestException as exc:
            if _never_sent(exc):
                raise _PassingError(self._redact(f"cannot reach {self.api_url} ({type(exc).__name__})")) from None
            if isinstance(exc, (requests.Timeout, requests.ConnectionError)):
                # The request went out and no answer came: Chatwork may have posted it. Sending
                # it again could post the summary twice, so this one is reported, not retried.
                raise ChatworkError(
                    self._redact(
                        f"Chatwork room {self.room_id}: no answer from {self.api_url} ({type(exc).__name__}); "
                        "the message may have been posted, so it is not sent again"
                    )
                ) from None
            raise ChatworkError(
                self._redact(f"Chatwork room {self.room_id}: request failed: {type(exc).__name__}: {exc}")
            ) from None
        status = response.status_code
        if 200 <= status < 300:
            return self._message_id(response)
        detail = self._error_text(response)
        if status != 429 and status < 500:
            raise ChatworkError(f"Chatwork refused the message for room {self.room_id}: HTTP {status}: {detail}")
        raise _PassingError(f"HTTP {status}: {detail}", self._server_wait(response) if status == 429 else 0.0)

    def _wait(self, state: tenacity.RetryCallState) -> float:
        """Exponential backoff, or longer when a 429 says how long; never over ``max_delay``."""
        failure = state.outcome.exception() if state.outcome else None
        server_wait = failure.server_wait if isinstance(failure, _PassingError) else 0.0
        return min(max(self.backoff * 2 ** (state.attempt_number - 1), server_wait), self.max_delay)

    def _log_retry(self, state: tenacity.RetryCallState) -> None:
        failure = state.outcome.exception() if state.outcome else None
        log.warning(
            "Chatwork room %s: %s; trying again in %.1f s (attempt %d of %d)",
            self.room_id,
            getattr(failure, "problem", failure),
            state.upcoming_sleep,
            state.attempt_number,
            self.retries + 1,
        )

    @staticmethod
    def _server_wait(response: requests.Response) -> float:
        """Seconds the server asks us to wait, from ``X-RateLimit-Reset`` or ``Retry-After``; 0 if none."""
        reset = response.headers.get("X-RateLimit-Reset", "").strip()
        if reset:
            try:
                return max(float(reset) - time.time(), 0.0)
            except ValueError:
                pass
        retry_after = response.headers.get("Retry-After", "").strip()
        if not retry_after:
            return 0.0
        try:
            return max(float(retry_after), 0.0)
        except ValueError:
            pass
        try:
            when = email.utils.parsedate_to_datetime(retry_after)
        except (TypeError, ValueError):
            return 0.0
        return max(when.timestamp() - time.time(), 0.0)

    def _message_id(self, response: requests.Response) -> str:
        try:
            message_id = response.json()["message_id"]
        except (ValueError, KeyError, TypeError):
            raise ChatworkError(
                f"Chatwork room {self.room_id}: HTTP {response.status_code} without a message_id: "
                f"{self._redact(response.text[:200])!r}"
            ) from None
        log.info("Posted Chatwork message %s to room %s", message_id, self.room_id)
        return str(message_id)

    def _error_text(self, response: requests.Response) -> str:
        """Chatwork's ``errors`` list as one line, else the start of the body."""
        try:
            errors = response.json().get("errors")
        except (ValueError, AttributeError):
            errors = None
        if isinstance(errors, Sequence) and not isinstance(errors, str) and errors:
            text = "; ".join(str(error) for error in errors)
        else:
            text = response.text.strip()[:200] or response.reason or "no details"
        return self._redact(text)

    def _redact(self, text: str) -> str:
        # Servers and proxies sometimes echo request headers back; the token must not travel on.
        return text.replace(self._api_key, "***")


class _PassingError(Exception):
    """A failure that the same request may not meet again: 429, 5xx, no connection."""

    def __init__(self, problem: str, server_wait: float = 0.0) -> None:
        super().__init__(problem)
        self.problem, self.server_wait = problem, server_wait


def _never_sent(exc: requests.RequestException) -> bool:
    """Whether the request certainly did not reach the server (no connection was made)."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(exc, requests.ConnectionError) and isinstance(reason, urllib3.exceptions.NewConnectionError)


def send_summary(summary: DaySummary, client: ChatworkClient | None) -> str | None:
    """Post the day's summary and return its message id, or None when spec rule 6 says not to send."""
    if client is None:
        log.info(
            "Chatwork summary for %s not sent: CHATWORK_API_KEY and CHATWORK_ROOM_ID are not both set",
            summary.day,
        )
        return None
    if summary.processed == 0:
        log.info(
            "Chatwork summary for %s not sent: no photo was processed (%d skipped)",
            summary.day,
            summary.skipped,
        )
        return None
    return client.post_message(format_summary(summary))


def chatwork_configured(settings: Settings) -> bool:
    """The summary is sent only when both ``CHATWORK_API_KEY`` and ``CHATWORK_ROOM_ID`` are set."""
    return bool(settings.chatwork_api_key and settings.chatwork_room_id)


def client_from_settings(settings: Settings) -> ChatworkClient | None:
    """Build the client from ``CHATWORK_*`` settings, or return None when the summary is off."""
    if not chatwork_configured(settings):
        log.info("Chatwork summary disabled: CHATWORK_API_KEY and CHATWORK_ROOM_ID are not both set")
        return None
    return ChatworkClient(
        api_key=settings.chatwork_api_key or "",
        room_id=settings.chatwork_room_id or "",
        api_url=settings.chatwork_api_url or DEFAULT_API_URL,
    )


def deliver_summary(
    summary: DaySummary, tracking: DayTracking, client: Callable[[], ChatworkClient | None], *, run_id: str
) -> str:
    """Send the run's summary at most once and record how it went in the day file (rule 6).

    Whether the photos were processed and whether Chatwork heard of it are different facts: a
    failed send (a misconfigured client included, hence ``client`` is a factory) is logged and
    recorded under ``notifications``, and never fails the day. A retried finishing task does not
    post a summary that this run already posted with the same text.
    """
    text = format_summary(summary)
    return post_once(
        tracking,
        lambda: send_summary(summary, client()),
        kind="summary",
        run_id=run_id,
        key=f"{run_id}\n{text}",
        what=f"Chatwork summary for {summary.day}",
    )


def post_once(
    tracking: DayTracking, send: Callable[[], str | None], *, kind: str, run_id: str | None, key: str, what: str
) -> str:
    """Call ``send`` (it posts a message, or returns None when there is nothing to post) unless a
    message of the same ``key`` was already sent, and record the outcome under the day file's
    ``notifications``. A Chatwork failure is logged and recorded, never raised: the work it
    reports on is done either way. Returns ``sent``, ``not sent``, ``already sent`` or ``failed: …``.
    """
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    if any(n.get("digest") == digest and n.get("status") == "sent" for n in tracking.load().get("notifications", ())):
        log.info("%s already sent by this run; not sending it again", what)
        return "already sent"
    entry: dict[str, Any] = {"kind": kind, "run_id": run_id, "digest": digest}
    try:
        message_id = send()
    except ChatworkError as exc:
        log.error("%s NOT sent: %s", what, exc)
        entry.update(status="failed", error=str(exc))
    else:
        entry.update(status="sent" if message_id else "not sent", message_id=message_id)
    entry["at"] = stamp(site_now(tracking.timezone))
    with tracking.update() as doc:
        doc.setdefault("notifications", []).append(entry)
    return entry["status"] if entry["status"] != "failed" else f"failed: {entry['error']}"
