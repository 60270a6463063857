"""A passive reply read by wechatpy, an implementation we did not write.

  wechatpy_reply.py                    < reply XML -> JSON: the reply as wechatpy parses it
  wechatpy_reply.py TOKEN KEY APPID    < envelope  -> the same, after wechatpy checked the
                                                      envelope's MsgSignature and decrypted it
"""
import json
import sys

import xmltodict
from wechatpy import parse_message
from wechatpy.crypto import WeChatCrypto


def main():
    args = sys.argv[1:]
    data = sys.stdin.read()
    encrypted = bool(args)
    if encrypted:
        token, key, app_id = args
        envelope = xmltodict.parse(data)["xml"]
        data = WeChatCrypto(token, key, app_id).decrypt_message(
            data, envelope["MsgSignature"], envelope["TimeStamp"], envelope["Nonce"]
        )
    message = parse_message(data)
    out = {
        "encrypted": encrypted,
        "type": message.type,
        "target": message.target,
        "source": message.source,
        "fields": xmltodict.parse(data)["xml"],
    }
    if message.type == "text":
        out["content"] = message.content
    print(json.dumps(out))


if __name__ == "__main__":
    main()
