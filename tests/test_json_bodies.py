"""Rasa's endpoint requests carry ujson-encoded bodies that read back as the same values."""

from __future__ import annotations

import json
import math

import ujson
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st
from rasa.utils.endpoints import EndpointConfig

from rasa_server import json_bodies
from tests.local_http import serve_locally
from tests.harness.examples import examples

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=40,
)


@settings(max_examples=examples(300), deadline=None)
@given(json_values)
def test_ujson_text_reads_back_as_what_json_writes(value):
    assert json.loads(ujson.dumps(value)) == json.loads(json.dumps(value))


def test_floats_round_trip_exactly():
    for value in (0.1 + 0.2, 1795612010.030123, 5e-324, 1e308, -0.0, math.pi):
        assert json.loads(ujson.dumps(value)) == value


async def test_an_endpoint_request_sends_the_ujson_body(monkeypatch):
    received = {}

    async def record(request: web.Request) -> web.Response:
        received["body"] = await request.read()
        received["type"] = request.content_type
        return web.json_response({"events": [], "responses": []})

    app = web.Application()
    app.router.add_post("/webhook", record)
    runner, url = await serve_locally(app)
    try:
        monkeypatch.setattr(EndpointConfig, "session", json_bodies._UPSTREAM)
        json_bodies.install()
        assert EndpointConfig.session is json_bodies.session
        payload = {
            "next_action": "validate_diagnostics_form",
            "sender_id": "商户/1",
            "tracker": {
                "events": [
                    {
                        "event": "user",
                        "text": "pos机报1000咋整",
                        "timestamp": 1795612010.030123,
                        "parse_data": {"intent": {"confidence": 0.9994}},
                    }
                ]
            },
            "version": "3.6.21",
        }
        answer = await EndpointConfig(f"{url}/webhook").request(method="post", json=payload)
    finally:
        await runner.cleanup()
    assert answer == {"events": [], "responses": []}
    assert received["type"] == "application/json"
    # ujson's own text (it escapes "/", the standard library does not), read back intact
    assert received["body"] == ujson.dumps(payload).encode()
    assert b"\\/" in received["body"]
    assert json.loads(received["body"]) == payload
