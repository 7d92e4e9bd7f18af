"""Chatwork credentials: the spec's environment variables, or an Airflow connection."""

from __future__ import annotations

import logging

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException

from platemask.config import Settings
from platemask.notify import ChatworkClient, client_from_settings

__all__ = ["DEFAULT_CONN_ID", "chatwork_client"]

log = logging.getLogger(__name__)

#: Connection used when CHATWORK_API_KEY / CHATWORK_ROOM_ID are not set: password = API token,
#: extra ``{"room_id": "123"}``, host = API base URL (optional).
DEFAULT_CONN_ID = "chatwork_default"


def chatwork_client(settings: Settings, conn_id: str = DEFAULT_CONN_ID) -> ChatworkClient | None:
    """A client from the environment variables first, else from ``conn_id``; None if neither."""
    client = client_from_settings(settings)
    if client is not None:
        return client
    try:
        conn = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return None
    room_id = str(conn.extra_dejson.get("room_id") or "")
    if not conn.password or not room_id:
        log.warning("Connection %s needs a password (API token) and extra room_id; Chatwork is off", conn_id)
        return None
    api_url = conn.host if conn.host and conn.host.startswith("http") else settings.chatwork_api_url
    return ChatworkClient(api_key=conn.password, room_id=room_id, api_url=api_url)
