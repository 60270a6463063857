"""WeChat safe-mode crypto done by wechatpy, an implementation we did not write.

  encrypt TOKEN KEY APPID NONCE TIMESTAMP  < xml        -> prints JSON {encrypt, msg_signature}
  decrypt TOKEN KEY APPID MSG_SIGNATURE TIMESTAMP NONCE < envelope -> prints the inner XML
"""
import json
import sys

import xmltodict
from wechatpy.crypto import WeChatCrypto


def main():
    command, token, key, app_id, *rest = sys.argv[1:]
    crypto = WeChatCrypto(token, key, app_id)
    data = sys.stdin.read()
    if command == "encrypt":
        nonce, timestamp = rest
        reply = xmltodict.parse(crypto.encrypt_message(data, nonce, timestamp))["xml"]
        print(json.dumps({"encrypt": reply["Encrypt"], "msg_signature": reply["MsgSignature"]}))
    elif command == "decrypt":
        msg_signature, timestamp, nonce = rest
        sys.stdout.write(crypto.decrypt_message(data, msg_signature, timestamp, nonce))
    else:
        sys.exit(f"unknown command {command}")


if __name__ == "__main__":
    main()
