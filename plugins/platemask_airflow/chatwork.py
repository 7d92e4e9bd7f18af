"""Chatwork for tasks and callbacks: a hook over the spec's variables or an Airflow connection."""

from __future__ import annotations

import logging

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException

from platemask.config import Settings
from platemask.notify import ChatworkClient, client_from_settings

__all__ = ["DEFAULT_CONN_ID", "ChatworkHook"]

log = logging.getLogger(__name__)

DEFAULT_CONN_ID = "chatwork_default"


class ChatworkHook(BaseHook):
    """Builds the Chatwork client of the daily summary, the restore report and failure alerts.

    The spec's ``CHATWORK_API_KEY`` and ``CHATWORK_ROOM_ID`` come first, so a deployment that
    sets them needs nothing in Airflow. Without them, the connection ``chatwork_conn_id`` is
    used: password = API token, extra ``{"room_id": "123"}``, host = API base URL (optional).
    Neither configured means Chatwork is off: :meth:`get_conn` returns None.

    :param chatwork_conn_id: the connection read when the variables are not set
    :param settings: platemask settings; without them only the ``CHATWORK_*`` variables are
        read, so a failure alert still goes out when another setting is invalid
    """

    conn_name_attr = "chatwork_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = "chatwork"
    hook_name = "Chatwork"

    def __init__(self, chatwork_conn_id: str = DEFAULT_CONN_ID, *, settings: Settings | None = None) -> None:
        super().__init__()
        self.chatwork_conn_id = chatwork_conn_id
        self.settings = settings or Settings.chatwork_only()

    def get_conn(self) -> ChatworkClient | None:
        """The client of the variables, else of the connection; None when Chatwork is not configured."""
        client = client_from_settings(self.settings)
        if client is not None:
            return client
        try:
            conn = self.get_connection(self.chatwork_conn_id)
        except AirflowNotFoundException:
            return None
        room_id = str(conn.extra_dejson.get("room_id") or "")
        if not conn.password or not room_id:
            log.warning(
                "Connection %s needs a password (API token) and extra room_id; Chatwork is off", self.chatwork_conn_id
            )
            return None
        api_url = conn.host if conn.host and conn.host.startswith("http") else self.settings.chatwork_api_url
        return ChatworkClient(api_key=conn.password, room_id=room_id, api_url=api_url)
