"""The WeCom / WeChat callback scheme written out independently of channels/wecom.py.

Tests build signatures and ciphertexts with these functions, straight from the
platforms' published algorithm, and check the channel against them.
"""

from __future__ import annotations

import base64
import hashlib
import os
import struct

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

# The published example of the callback documentation (加解密方案说明, 举例说明).
DOC_TOKEN = "QDG6eK"
DOC_AES_KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
DOC_CORP_ID = "wx5823bf96d3bd56c7"
DOC_TIMESTAMP, DOC_NONCE = "1409659589", "263014780"
DOC_ECHOSTR = "P9nAzCzyDtyTWESHep1vC5X9xho/qYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp+4RPcs8TgAE7OaBO+FZXvnaqQ=="
DOC_SIGNATURE = "5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3"
DOC_ECHO_PLAIN = "1616140317555161061"


def sign(token: str, *parts: str) -> str:
    """SHA-1 over the sorted, concatenated strings."""
    return hashlib.sha1("".join(sorted([token, *parts])).encode()).hexdigest()


def encrypt_bytes(message: bytes, receive_id: bytes = DOC_CORP_ID.encode(), encoding_aes_key: str = DOC_AES_KEY) -> str:
    """random(16) + length(4, big-endian) + message + receive id, PKCS#7 to 32, AES-256-CBC
    (over raw bytes: a test may send what is not UTF-8)."""
    key = base64.b64decode(encoding_aes_key + "=")
    plain = os.urandom(16) + struct.pack(">I", len(message)) + message + receive_id
    pad = 32 - len(plain) % 32
    plain += bytes([pad]) * pad
    encryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    return base64.b64encode(encryptor.update(plain) + encryptor.finalize()).decode()


def encrypt(encoding_aes_key: str, message: str, receive_id: str) -> str:
    """The published scheme over a text message."""
    return encrypt_bytes(message.encode(), receive_id.encode(), encoding_aes_key)


def text_message(user: str, content: str, msg_id: str, to: str = DOC_CORP_ID) -> str:
    """The plaintext XML of a text message as the platform sends it."""
    return (
        f"<xml><ToUserName><![CDATA[{to}]]></ToUserName><FromUserName><![CDATA[{user}]]></FromUserName>"
        f"<CreateTime>1764036000</CreateTime><MsgType><![CDATA[text]]></MsgType>"
        f"<Content><![CDATA[{content}]]></Content><MsgId>{msg_id}</MsgId><AgentID>1000002</AgentID></xml>"
    )


def callback(token: str, aes_key: str, receive_id: str, plain_xml: str, timestamp: str, nonce: str = "7788"):
    """Query parameters and body of an encrypted callback."""
    encrypted = encrypt(aes_key, plain_xml, receive_id)
    body = f"<xml><ToUserName><![CDATA[{receive_id}]]></ToUserName><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"
    query = {"msg_signature": sign(token, timestamp, nonce, encrypted), "timestamp": timestamp, "nonce": nonce}
    return query, body.encode()


def media_message(user: str, msg_type: str, msg_id: str, to: str = DOC_CORP_ID, **fields: str) -> str:
    """The plaintext XML of a non-text message (image, voice, location, ...) with its own fields,
    e.g. ``MediaId``, ``Format``, ``Recognition``, ``Location_X``."""
    extra = "".join(f"<{name}><![CDATA[{value}]]></{name}>" for name, value in fields.items())
    return (
        f"<xml><ToUserName><![CDATA[{to}]]></ToUserName><FromUserName><![CDATA[{user}]]></FromUserName>"
        f"<CreateTime>1764036000</CreateTime><MsgType><![CDATA[{msg_type}]]></MsgType>{extra}"
        f"<MsgId>{msg_id}</MsgId></xml>"
    )


def kf_signal(open_kfid: str, token: str, to: str = DOC_CORP_ID) -> str:
    """The plaintext XML of a 微信客服 callback: only a signal to pull with ``kf/sync_msg``."""
    return (
        f"<xml><ToUserName><![CDATA[{to}]]></ToUserName><CreateTime>1764036000</CreateTime>"
        f"<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[kf_msg_or_event]]></Event>"
        f"<Token><![CDATA[{token}]]></Token><OpenKfId><![CDATA[{open_kfid}]]></OpenKfId></xml>"
    )
