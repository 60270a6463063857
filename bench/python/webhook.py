"""The webhook a wechatpy user would write, for the benchmark's Python comparison.

The usual wechatpy recipe: ``check_signature`` on plaintext pushes, ``WeChatCrypto``
(which checks ``msg_signature`` and decrypts) on encrypted ones, then ``parse_message``;
answer ``success``. It does less than wechat-qr does with a push: no replay window, no
de-duplication, no event log and no delivery to subscribers.

Served by gunicorn (``gunicorn webhook:application``); configured by the environment the
harness sets: WECHAT_TOKEN, WECHAT_APP_ID and, for safe mode, WECHAT_ENCODING_AES_KEY.
"""

import os
from urllib.parse import parse_qs

from wechatpy import parse_message
from wechatpy.crypto import WeChatCrypto
from wechatpy.exceptions import InvalidAppIdException, InvalidSignatureException
from wechatpy.utils import check_signature

TOKEN = os.environ["WECHAT_TOKEN"]
APP_ID = os.environ["WECHAT_APP_ID"]
AES_KEY = os.environ.get("WECHAT_ENCODING_AES_KEY")
CRYPTO = WeChatCrypto(TOKEN, AES_KEY, APP_ID) if AES_KEY else None


def answer(start_response, status, body):
    start_response(
        status,
        [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))],
    )
    return [body]


def application(environ, start_response):
    if environ.get("PATH_INFO") != "/wechat" or environ["REQUEST_METHOD"] != "POST":
        return answer(start_response, "404 Not Found", b"not found")
    query = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length)
    try:
        if query.get("encrypt_type") == "aes":
            if CRYPTO is None:
                return answer(start_response, "400 Bad Request", b"no EncodingAESKey")
            xml = CRYPTO.decrypt_message(
                body, query["msg_signature"], query["timestamp"], query["nonce"]
            )
        else:
            check_signature(TOKEN, query["signature"], query["timestamp"], query["nonce"])
            xml = body
    except (KeyError, InvalidSignatureException, InvalidAppIdException):
        return answer(start_response, "403 Forbidden", b"signature mismatch")
    parse_message(xml)
    return answer(start_response, "200 OK", b"success")
