"""A notifier that posts a templated message to Chatwork from any Airflow callback."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import cached_property

from airflow.sdk import BaseNotifier, Context

from platemask.notify import ChatworkClient
from platemask_airflow.chatwork import DEFAULT_CONN_ID, ChatworkHook

__all__ = ["ChatworkNotifier"]

log = logging.getLogger(__name__)


class ChatworkNotifier(BaseNotifier):
    """Post ``text`` to the Chatwork room of CHATWORK_ROOM_ID (or of ``chatwork_conn_id``).

    :param text: the message, a Jinja template rendered with the callback's context
    :param chatwork_conn_id: connection used when the CHATWORK_* variables are not set
    """

    template_fields: Sequence[str] = ("text",)

    def __init__(self, *, text: str, chatwork_conn_id: str = DEFAULT_CONN_ID) -> None:
        super().__init__()
        self.text = text
        self.chatwork_conn_id = chatwork_conn_id

    @cached_property
    def client(self) -> ChatworkClient | None:
        """The Chatwork client, built on first use; None when Chatwork is not configured."""
        return ChatworkHook(self.chatwork_conn_id).get_conn()

    def notify(self, context: Context) -> None:
        """Send the rendered message (a no-op, logged, when Chatwork is not configured)."""
        if self.client is None:
            log.info("Chatwork is not configured (CHATWORK_* or %s); not sending", self.chatwork_conn_id)
            return
        self.client.post_message(self.text)
