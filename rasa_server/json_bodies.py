"""Encode the JSON bodies Rasa sends to its endpoints with ujson.

Every custom-action call posts the whole tracker (all events of the session, with their
parse data) and, for an action with ``send_domain``, the 48 kB domain. aiohttp encodes
``json=`` bodies with the standard library: 1.1 ms for a 109-event handoff tracker, 2.1 ms
with the domain, on every call — about half of an action call's CPU in py-spy. ujson (already
installed with Rasa) writes the same JSON values in 0.45 / 0.78 ms.
"""

from __future__ import annotations

import aiohttp
import ujson
from rasa.utils.endpoints import EndpointConfig

_UPSTREAM = EndpointConfig.session


def session(self: EndpointConfig) -> aiohttp.ClientSession:
    """``EndpointConfig.session`` whose ``json=`` bodies are encoded by ``ujson.dumps``."""
    client = _UPSTREAM(self)
    # aiohttp keeps the constructor's json_serialize here and JsonPayload reads it per
    # request; the pinned aiohttp (<3.10) is checked against a real server in the tests.
    client._json_serialize = ujson.dumps
    return client


def install() -> None:
    """Use ``session`` for every endpoint of this process (action server, NLG, ...)."""
    EndpointConfig.session = session
