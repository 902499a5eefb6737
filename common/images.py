"""Which picture a body is, from its first bytes: the one check the channels (before they
offer a merchant's picture to the desk) and the desk (before it stores one) share.

A platform's or a client's ``Content-Type`` is not trusted: what the console later serves
with a type (and ``nosniff``) must be that type.
"""

from __future__ import annotations

from typing import Optional

# The first bytes of each picture type the desk takes (WebP: "RIFF", 4 bytes of size, "WEBP").
_SIGNATURES = ((b"\xff\xd8\xff", "image/jpeg"), (b"\x89PNG\r\n\x1a\n", "image/png"), (b"GIF87a", "image/gif"), (b"GIF89a", "image/gif"))


def image_type(data: bytes) -> Optional[str]:
    """The content type of a JPEG, PNG, GIF or WebP picture from its first bytes, else None."""
    for signature, content_type in _SIGNATURES:
        if data.startswith(signature):
            return content_type
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def looks_like(content_type: str, data: bytes) -> bool:
    """Do the bytes start the way a picture of ``content_type`` starts?"""
    return image_type(data) == content_type
