"""HTTP calls from a test to the processes it started: raw, (status, JSON), or JSON."""

from __future__ import annotations

import io
import json
import urllib.error
import urllib.request
from email.message import Message
from typing import Any, Dict, Optional, Tuple


def raw(
    method: str, url: str, data: Optional[bytes] = None, headers: Optional[Dict[str, str]] = None, timeout: float = 60
) -> Tuple[int, bytes]:
    """Status and body, whatever the status."""
    request = urllib.request.Request(url, method=method, data=data, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def request(method: str, url: str, body: Any = None, headers: Optional[Dict[str, str]] = None) -> Tuple[int, Any]:
    """(status, parsed JSON body): HTTP errors are returned, not raised."""
    status, data = raw(method, url, json.dumps(body).encode() if body is not None else None, headers, timeout=30)
    return status, json.loads(data or b"null")


def http(method: str, url: str, body: Any = None, headers: Optional[Dict[str, str]] = None) -> Any:
    """The parsed JSON body of a 2xx answer; an error status raises ``HTTPError`` (body readable)."""
    status, data = raw(method, url, json.dumps(body).encode() if body is not None else None, headers, timeout=30)
    if status >= 400:
        raise urllib.error.HTTPError(url, status, data.decode(errors="replace"), Message(), io.BytesIO(data))
    return json.loads(data or b"null")
