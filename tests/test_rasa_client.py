"""The desk's Rasa client keeps one connection pool for its life (made on the first call,
closed with the app), instead of a new session and TCP connection per call."""

from __future__ import annotations

from aiohttp.test_utils import TestClient, TestServer

from support_desk.api import RELAY
from support_desk.app import create_app
from support_desk.rasa_client import RasaClient
from tests.harness.desk_app import AUTH, desk_settings


async def test_calls_share_one_connection_and_close_cleanly(rasa):
    client = RasaClient(rasa.url, "rasa-token")
    for n in range(3):
        await client.append_events("shop-1", [{"event": "bot", "text": f"#{n}"}])
    assert len(await client.tracker_events("shop-1")) == 3
    # One keep-alive connection: every request came from the same client port.
    assert len({request.transport.get_extra_info("peername")[1] for request in rasa.requests}) == 1
    await client.close()
    await client.close()  # twice is fine


async def test_the_app_closes_its_rasa_session_on_cleanup(tmp_path, rasa):
    app = create_app(desk_settings(f"sqlite:///{tmp_path / 'desk.db'}", rasa.url))
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        created = await (await client.post("/api/escalations", json={"sender_id": "shop-1"}, headers=AUTH)).json()
        response = await client.post(f"/api/escalations/{created['id']}/reply", json={"text": "您好"}, headers=AUTH)
        assert response.status == 201
        session = app[RELAY].rasa._session
        assert session is not None and not session.closed
    assert session.closed
