"""A notifier that posts a templated message to Chatwork from any Airflow callback."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING

from airflow.sdk import BaseNotifier, Context

from platemask.config import Settings
from platemask.errors import ConfigError
from platemask.notify import ChatworkClient
from platemask_airflow.chatwork import DEFAULT_CONN_ID, ChatworkHook
from platemask_airflow.operators import car_label

if TYPE_CHECKING:
    import jinja2

__all__ = ["FAILURE_TEXT", "RUN_TIMEOUT_TEXT", "ChatworkNotifier"]

log = logging.getLogger(__name__)

#: The alert of a failed task: which one (a car task by its car id), why, and where its log is.
FAILURE_TEXT = (
    "[info][title]🚗 ナンバープレート処理: 失敗[/title]"
    "{{ dag.dag_id }} {{ run_id }}: {{ what }}\n"
    "{{ failed_task }}: "
    "{{ exception | string | truncate(800) }}\n{{ ti.log_url }}[/info]"
)
#: The alert of a daily run failed by its ``dagrun_timeout``; other run failures have a task's alert.
RUN_TIMEOUT_TEXT = (
    "{% if reason == 'timed_out' %}[info][title]🚗 ナンバープレート処理: 時間切れ[/title]"
    "{{ dag.dag_id }} {{ dag_run.run_id }}: the run took longer than its dagrun_timeout ({{ dag.dagrun_timeout }}) and "
    "was stopped; unfinished cars are listed as errors on the next run of the day. Find what hung (a car task "
    "still running, storage), then clear the run.[/info]{% endif %}"
)


class ChatworkNotifier(BaseNotifier):
    """Post ``text`` to the Chatwork room of CHATWORK_ROOM_ID (or of ``chatwork_conn_id``).

    A message that renders empty is not sent, so a template can decide whether to speak. When a
    platemask setting is invalid the message says which, since that is often why a task failed.

    :param text: the message, a Jinja template rendered with the callback's context
    :param chatwork_conn_id: connection used when the CHATWORK_* variables are not set
    :param unless: exception types that need no alert (the failure is reported another way)
    :param only: exception types that need one, when only those do (a retry after a timeout)
    """

    template_fields: Sequence[str] = ("text",)

    def __init__(
        self,
        *,
        text: str,
        chatwork_conn_id: str = DEFAULT_CONN_ID,
        unless: tuple[type[BaseException], ...] = (),
        only: tuple[type[BaseException], ...] = (),
    ) -> None:
        super().__init__()
        self.text = text
        self.chatwork_conn_id = chatwork_conn_id
        self.unless = unless
        self.only = only

    @classmethod
    def task_failed(cls, what: str, **kwargs) -> ChatworkNotifier:
        """The alert of a failed task; ``what`` says in a few words what did not get done."""
        return cls(text=FAILURE_TEXT.replace("{{ what }}", what), **kwargs)

    def render_template_fields(self, context: Context, jinja_env: jinja2.Environment | None = None) -> None:
        """Render ``text``; ``airflow dags test`` hands run callbacks a serialized DAG, without its own
        template environment, so the default one renders there."""
        dag = context.get("dag")
        if jinja_env is None and dag is not None and not hasattr(dag, "get_template_env"):
            jinja_env = self.get_template_env()
        context["failed_task"] = _failed_task(context)  # type: ignore[typeddict-unknown-key]
        super().render_template_fields(context, jinja_env)

    @cached_property
    def client(self) -> ChatworkClient | None:
        """The Chatwork client, built on first use; None when Chatwork is not configured."""
        return ChatworkHook(self.chatwork_conn_id).get_conn()

    def notify(self, context: Context) -> None:
        """Send the rendered message (a no-op, logged, when Chatwork is not configured)."""
        exception = context.get("exception")
        if (self.unless and isinstance(exception, self.unless)) or (self.only and not isinstance(exception, self.only)):
            return
        if not self.text.strip():
            return
        if self.client is None:
            log.info("Chatwork is not configured (CHATWORK_* or %s); not sending", self.chatwork_conn_id)
            return
        self.client.post_message(self.text + _settings_problem())


def _settings_problem() -> str:
    """A line naming an invalid setting, or nothing."""
    try:
        Settings.from_env()
    except ConfigError as exc:
        return f"\n⚠️ invalid setting: {exc}"
    return ""


def _failed_task(context: Context) -> str:
    """The task an alert is about: its id, and a car task's car id(s).

    A car task's label (its rendered map index) is set when it ends with an error; one stopped
    by its timeout has none, so the car ids come from the task's own rendered arguments.
    """
    ti = context.get("ti")
    label = getattr(ti, "rendered_map_index", None)
    car_ids = getattr(context.get("task"), "car_ids", None)
    if not label and car_ids:
        label = car_label([car_ids] if isinstance(car_ids, str) else [str(c) for c in car_ids])
    task_id = getattr(ti, "task_id", "?")
    return f"{task_id} {label}" if label else task_id
