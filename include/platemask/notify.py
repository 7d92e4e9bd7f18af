"""Spec rule 6, the daily Chatwork summary: what it counts, its exact text, when it is sent, and
a small client that posts it.

Chatwork API v2: ``POST {api_url}/rooms/{room_id}/messages`` with the token in the
``X-ChatWorkToken`` header and a form-encoded ``body``; the answer is ``{"message_id": "..."}``,
an error is ``{"errors": ["..."]}``, and too many calls get HTTP 429 with ``X-RateLimit-Reset``
(Unix time). Nothing here imports Airflow: the DAG's last task calls :func:`send_summary`.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import requests
import requests.adapters
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
    """Posts messages to one Chatwork room, through a ``requests`` session whose urllib3 ``Retry`` tries again.

    :param api_key: Chatwork API token; it never appears in errors, logs or ``repr``.
    :param room_id: the room's id, the digits after ``#!rid`` in the room's address.
    :param api_url: API base URL (``CHATWORK_API_URL``), for proxies and tests.
    :param timeout: seconds to wait for a connection and for the answer.
    :param retries: extra tries after a 429, a 5xx or a connection that could not be made.
    :param backoff: first wait between tries in seconds, doubled each time.
    :param max_delay: longest single wait, also for ``X-RateLimit-Reset``/``Retry-After``.
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

    def __repr__(self) -> str:
        return f"ChatworkClient(room_id={self.room_id!r}, api_url={self.api_url!r}, api_key='***')"

    @functools.cached_property
    def session(self) -> requests.Session:
        """The HTTP session that retries a message, built on first use so that constructing a client does no I/O."""
        retry = _ChatworkRetry(
            total=self.retries,
            connect=self.retries,  # no connection was made, so nothing was posted: safe to send again
            # An answer that never came (read timeout, connection dropped) is not retried: Chatwork
            # may have posted the message, and sending it again could post the summary twice.
            read=False,
            other=0,  # nor any other failure (TLS, proxy) whose request may have gone out
            status_forcelist=(429, 500, 502, 503, 504),
            allowed_methods=("POST",),
            backoff_factor=self.backoff,
            backoff_max=self.max_delay,
            respect_retry_after_header=True,
            retry_after_max=self.max_delay,  # type: ignore[arg-type]  # urllib3 says int; any number works
            raise_on_status=False,  # the last answer comes back, with Chatwork's errors in it
        )
        session = requests.Session()
        session.mount(f"{self.api_url}/", requests.adapters.HTTPAdapter(max_retries=retry))
        return session

    @property
    def messages_url(self) -> str:
        """Where messages to this room are posted."""
        return f"{self.api_url}/rooms/{self.room_id}/messages"

    def room(self) -> dict[str, Any]:
        """The room as Chatwork describes it (``GET /rooms/{room_id}``), tried once.

        A cheap authenticated call that posts nothing: it proves the token and that its account
        is in the room (``role`` says whether it may post: ``readonly`` may not).
        """
        try:
            response = requests.get(f"{self.api_url}/rooms/{self.room_id}", headers=self._headers, timeout=self.timeout)
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
        try:
            response = self.session.post(self.messages_url, data=form, headers=self._headers, timeout=self.timeout)
        except requests.RequestException as exc:
            raise ChatworkError(self._redact(self._failure(exc))) from None
        if not response.ok:
            history = response.raw.retries.history if response.raw.retries else ()
            tries = f" after {len(history) + 1} attempts" if history else ""
            raise ChatworkError(
                f"Chatwork did not take the message for room {self.room_id}{tries}: "
                f"HTTP {response.status_code}: {self._error_text(response)}"
            )
        try:
            message_id = str(response.json()["message_id"])
        except (ValueError, KeyError, TypeError):
            raise ChatworkError(
                f"Chatwork room {self.room_id}: HTTP {response.status_code} without a message_id: "
                f"{self._redact(response.text[:200])!r}"
            ) from None
        log.info("Posted Chatwork message %s to room %s", message_id, self.room_id)
        return message_id

    @property
    def _headers(self) -> dict[str, str]:
        return {"X-ChatWorkToken": self._api_key, "Accept": "application/json"}

    def _failure(self, exc: requests.RequestException) -> str:
        """What a request that got no answer means: never sent (after the retries), or perhaps posted."""
        reason = getattr(exc.args[0], "reason", None) if exc.args else None
        if isinstance(reason, urllib3.exceptions.ConnectTimeoutError):  # NewConnectionError included
            return (
                f"Chatwork did not take the message for room {self.room_id} after {self.retries + 1} attempts: "
                f"cannot reach {self.api_url} ({type(exc).__name__})"
            )
        if isinstance(exc, (requests.Timeout, requests.ConnectionError)):
            return (
                f"Chatwork room {self.room_id}: no answer from {self.api_url} ({type(exc).__name__}); "
                "the message may have been posted, so it is not sent again"
            )
        return f"Chatwork room {self.room_id}: request failed: {type(exc).__name__}: {exc}"

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


class _ChatworkRetry(urllib3.util.Retry):
    """urllib3's ``Retry``, which also waits for Chatwork's ``X-RateLimit-Reset`` and logs each retry."""

    def get_retry_after(self, response: urllib3.BaseHTTPResponse) -> float | None:
        """Seconds until ``X-RateLimit-Reset`` (Unix time, Chatwork's 429), else ``Retry-After``'s."""
        reset = response.headers.get("X-RateLimit-Reset", "").strip()
        if reset.isdigit():
            return min(max(int(reset) - time.time(), 0.0), self.retry_after_max)
        try:
            return super().get_retry_after(response)
        except urllib3.exceptions.InvalidHeader:
            return None  # a Retry-After we cannot read: back off as usual

    def get_backoff_time(self) -> float:
        """``backoff`` before the first retry too, doubling, never over ``max_delay``: urllib3 would
        send the second try at once, and a Chatwork that just failed is given a moment first."""
        tries = len(self.history)
        return min(self.backoff_factor * 2 ** (tries - 1), self.backoff_max) if tries else 0.0

    def increment(self, *args: Any, **kwargs: Any) -> _ChatworkRetry:
        """Count a failed try as urllib3 does (it raises when none is left), and log the next one."""
        retry = super().increment(*args, **kwargs)
        last = retry.history[-1]
        problem = f"HTTP {last.status}" if last.status else type(last.error).__name__
        log.warning(
            "Chatwork %s %s: %s; trying again (attempt %d)", last.method, last.url, problem, len(retry.history) + 1
        )
        return retry


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
