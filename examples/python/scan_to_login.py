#!/usr/bin/env python3
"""Scan-to-login: show a one-time QR code and learn which WeChat user scanned it.

The flow a website's login page runs:
  1. mint a temporary code whose scene is a fresh random nonce (one code per login attempt);
  2. save its image for the page to show;
  3. open StreamEvents filtered to that ticket *before* showing the code, so no scan can
     slip in between;
  4. wait, up to a deadline, for the SUBSCRIBE (a new follower) or SCAN (an existing one):
     its openid is the user who logged in.

Output, one `key=value` per line on stdout (flushed as it happens):
  ticket=<TICKET>    the code is on screen and the stream is listening
  openid=<OPENID>    the user who scanned; exit 0
Exit 2 when nobody scanned before the deadline, 1 on any other error.

    .venv/bin/python examples/python/scan_to_login.py --image login.jpg --deadline 120

The gRPC address comes from --addr, else $WECHAT_QR_ADDR, else 127.0.0.1:50051.
"""

import argparse
import os
import secrets
import sys
from pathlib import Path

import grpc

# The generated stubs live in clients/python (`buf generate`); put them on the path so
# the example runs from a checkout without installing anything of its own.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "clients" / "python"))

from wechat.qr.v1 import qr_service_pb2 as qr  # noqa: E402
from wechat.qr.v1 import qr_service_pb2_grpc as qr_grpc  # noqa: E402

# A login code only needs to live as long as the login page is open.
TICKET_LIFETIME_SECONDS = 300


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--addr", default=os.environ.get("WECHAT_QR_ADDR", "127.0.0.1:50051"))
    parser.add_argument("--image", required=True, type=Path, help="where to save the QR JPEG")
    parser.add_argument(
        "--deadline", type=float, default=120.0, help="seconds to wait for the scan"
    )
    args = parser.parse_args()

    with grpc.insecure_channel(args.addr) as channel:
        client = qr_grpc.QrServiceStub(channel)

        nonce = f"login-{secrets.token_hex(8)}"
        created = client.CreateTicket(
            qr.CreateTicketRequest(scene_str=nonce, expire_seconds=TICKET_LIFETIME_SECONDS),
            timeout=10,
        )
        image = client.GetImage(qr.GetImageRequest(ticket=created.ticket), timeout=10)
        args.image.write_bytes(image.image)
        print(
            f"saved {len(image.image)} bytes of {image.content_type} to {args.image}",
            file=sys.stderr,
        )

        events = client.StreamEvents(
            qr.StreamEventsRequest(
                tickets=[created.ticket],
                types=[qr.EVENT_TYPE_SUBSCRIBE, qr.EVENT_TYPE_SCAN],
            ),
            timeout=args.deadline,
        )
        # The service answers the stream's headers once the subscription is in place, so
        # after this every scan of the ticket reaches us: only now show the code.
        events.initial_metadata()
        print(f"ticket={created.ticket}", flush=True)

        try:
            for response in events:
                event = response.event
                kind = qr.EventType.Name(event.type)
                print(
                    f"{kind} new_follower={event.new_follower} scene={event.scene}",
                    file=sys.stderr,
                )
                print(f"openid={event.openid}", flush=True)
                return 0
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                print(f"nobody scanned within {args.deadline:g} s", file=sys.stderr)
                return 2
            raise
        finally:
            events.cancel()
    print("the event stream ended before a scan", file=sys.stderr)
    return 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except grpc.RpcError as error:
        print(f"gRPC error: {error.code().name}: {error.details()}", file=sys.stderr)
        sys.exit(1)
