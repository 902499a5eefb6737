"""A real desk process (``python -m support_desk``) killed while it sends the "it is over"
messages of a closed incident, then started again: every merchant gets the message, and
nobody gets it twice, also those whose message Rasa had stored when the desk died."""

from __future__ import annotations

import asyncio
from typing import Dict, List

import aiohttp
import pytest
from aiohttp import web

from tests.harness.desk import DeskProcess
from tests.harness.desk_app import RasaDouble

MERCHANTS = 20
ANSWERED = 2
CONCURRENCY = 8  # support_desk/settings.yml incidents.send_concurrency

pytestmark = pytest.mark.process  # starts the desk (tests/harness/fixtures.py)


class StallingRasa(RasaDouble):
    """Answers the first ``ANSWERED`` appends; the next ones never get an answer (the odd
    ones are stored first: Rasa took them, the desk never heard), until ``stall`` is off."""

    def __init__(self) -> None:
        super().__init__()
        self.stall = True
        self.seen = 0

    async def _append(self, request: web.Request) -> web.Response:
        if not self.stall:
            return await super()._append(request)
        self.seen += 1
        if self.seen <= ANSWERED:
            return await super()._append(request)
        if self.seen % 2:
            await super()._append(request)
        await asyncio.Event().wait()  # the answer that never comes
        raise AssertionError("unreachable")


async def wait_until(check, seconds: float) -> None:
    for _ in range(int(seconds / 0.1)):
        if await check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("not reached in time")


async def test_a_desk_restarted_while_telling_merchants_tells_each_exactly_once(tmp_path, monkeypatch):
    rasa = StallingRasa()
    monkeypatch.setenv("RASA_URL", await rasa.start())
    monkeypatch.setenv("RASA_AUTH_TOKEN", "rasa-token")
    desk = await asyncio.to_thread(DeskProcess, tmp_path)  # the loop keeps serving Rasa meanwhile
    headers = {"Authorization": f"Bearer {desk.token}"}
    async with aiohttp.ClientSession(headers=headers) as http:

        async def call(method: str, path: str, body=None, base=desk.url) -> Dict:
            async with http.request(method, base + path, json=body) as response:
                assert response.status < 300, await response.text()
                return await response.json()

        try:
            incident = await call("POST", "/api/incidents", {"message": {"zh": "网关故障", "en": "Gateway down"}})
            for n in range(MERCHANTS):
                await call(
                    "POST",
                    f"/api/incidents/{incident['id']}/merchants",
                    {"sender_id": f"shop-{n}", "channel": "socketio", "language": "en" if n % 2 else "zh", "wants_person": True},
                )
            closed = await call("POST", f"/api/incidents/{incident['id']}/close", {"note": "gateway back"})
            assert closed["notices_planned"] == MERCHANTS

            async def all_slots_stalled() -> bool:
                return rasa.seen >= ANSWERED + CONCURRENCY

            await wait_until(all_slots_stalled, 30)
            desk.process.kill()  # a crash: no shutdown, eight messages half sent
            desk.process.wait(10)
        finally:
            if desk.process.poll() is None:
                desk.stop()
        stored_before = {sender: len(events) for sender, events in rasa.events.items()}
        assert len(stored_before) == ANSWERED + CONCURRENCY // 2  # Rasa had these when the desk died

        rasa.stall = False
        again = await asyncio.to_thread(DeskProcess, tmp_path)
        try:

            async def everyone_told() -> bool:
                shown = await call("GET", f"/api/incidents/{incident['id']}", base=again.url)
                return shown["notices"]["reached"] == MERCHANTS

            await wait_until(everyone_told, 90)
            shown = await call("GET", f"/api/incidents/{incident['id']}", base=again.url)
        finally:
            again.stop()
    await rasa.server.close()

    assert shown["all_told_at"] and shown["notices"]["waiting"] == 0
    assert sorted(rasa.events) == sorted(f"shop-{n}" for n in range(MERCHANTS))
    ids: List[int] = []
    for sender, events in rasa.events.items():
        assert len(events) == 1, f"{sender} was told {len(events)} times"
        ids.append(events[0]["metadata"]["desk_message_id"])
        english = int(sender.split("-")[1]) % 2
        assert ("reversed automatically" in events[0]["text"]) == bool(english)
    assert len(set(ids)) == MERCHANTS
