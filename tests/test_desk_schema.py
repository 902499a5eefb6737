"""schemathesis against the desk's OpenAPI document, on a real desk process.

``python -m support_desk`` on SQLite in a temporary directory, on a free loopback port,
Rasa pointed at a closed port (replies are kept, 202). For every operation of
``support_desk/openapi.yml``, schemathesis generates valid and invalid requests (with
the bearer token) and checks: no 5xx, every status is one the document lists, and
every answer matches the document's schema and content type. Examples are
derandomized and bounded (40 per operation and kind; invalid requests are checked for
no 5xx only), so each run sends the same requests.
(schemathesis 3.14 through its Python API: its pytest plugin's ``from_pytest_fixture`` is
not needed, and later releases pin pytest<8 or a jsonschema that Rasa 3.6 refuses.)
"""

from __future__ import annotations

import os
from typing import Dict, Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.serializers import OctetStreamSerializer, register
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from support_desk.openapi import openapi_document
from tests.harness.desk import DeskProcess
from tests.harness.processes import free_port

pytestmark = pytest.mark.process  # starts processes (tests/harness/fixtures.py)

# The pictures of POST /api/channel/attachments are raw bytes, as for octet-stream.
register("image/jpeg", aliases=("image/png", "image/gif", "image/webp"))(OctetStreamSerializer)
CHECKS = (not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance)
SCHEMA = schemathesis.from_dict(openapi_document())
OPERATIONS: Dict[str, object] = {}
for result in SCHEMA.get_all_operations():
    operation = result.ok()
    OPERATIONS[f"{operation.method.upper()} {operation.path}"] = operation


@pytest.fixture(scope="module")
def desk(tmp_path_factory) -> Iterator[DeskProcess]:
    saved = {name: os.environ.get(name) for name in ("RASA_URL", "RASA_AUTH_TOKEN", "DESK_TRAINING_COMMAND")}
    os.environ["RASA_URL"] = f"http://127.0.0.1:{free_port()}"  # nothing listens: replies wait
    os.environ["RASA_AUTH_TOKEN"] = "schema-test-rasa-token"
    # POST /api/training starts a job whose "training" fails at once (no real training).
    os.environ["DESK_TRAINING_COMMAND"] = "python -c \"raise SystemExit('no training in this check')\""
    try:
        process = DeskProcess(tmp_path_factory.mktemp("schema-desk"))
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    # Something to find: an escalation and an incident with id 1.
    process.call("POST", "/api/escalations", {"sender_id": "shop-schema", "summary": "报1000"})
    process.call("POST", "/api/incidents", {"message": {"zh": "维护", "en": "maintenance"}})
    yield process
    process.stop()


def test_every_operation_is_checked():
    assert len(OPERATIONS) == 32


@pytest.mark.parametrize("generation", ["positive", "negative"])
@pytest.mark.parametrize("name", sorted(OPERATIONS))
def test_operation_conforms_to_the_openapi_document(desk, name, generation):
    operation = OPERATIONS[name]
    headers = {"Authorization": f"Bearer {desk.token}"}
    method = schemathesis.DataGenerationMethod[generation]

    @settings(max_examples=40, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(data_generation_method=method))
    def check(case):
        response = case.call(base_url=desk.url, headers=headers, timeout=30)
        # Invalid requests: no 5xx. Their answers are not held to the document, because
        # some never reach the app: aiohttp's HTTP parser refuses a malformed header with a
        # plain-text 400 of its own.
        case.validate_response(response, checks=CHECKS if generation == "positive" else (not_a_server_error,))

    check()
