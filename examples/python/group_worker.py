#!/usr/bin/env python3
"""A back-end worker in a consumer group: each event goes to one worker of the group.

Run it as many times as you run replicas; every replica joins the same group and the
service hands each scan to one of them. The flow:
  1. create the group once (ALREADY_EXISTS from the second replica on is fine);
  2. open ConsumeGroup: events come out, acknowledgements go back on the same stream;
  3. handle each event, then acknowledge it. An event not acknowledged within the group's
     ack deadline (a worker that crashed, hung or was killed) goes to another worker.

Output, one line per event handled (flushed as it happens):
  handled <openid> <event type> delivery=<n>
Exit 0 after --max events (0: run until the stream ends), 1 on an error status.

    .venv/bin/python examples/python/group_worker.py --group coupons --name worker-1

The gRPC address comes from --addr, else $WECHAT_QR_ADDR, else 127.0.0.1:50051.
"""

import argparse
import os
import queue
import sys
from pathlib import Path

import grpc

# The generated stubs live in clients/python (`buf generate`); put them on the path so
# the example runs from a checkout without installing anything of its own.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "clients" / "python"))

from wechat.qr.v1 import consumer_groups_pb2 as groups  # noqa: E402
from wechat.qr.v1 import consumer_groups_pb2_grpc as groups_grpc  # noqa: E402
from wechat.qr.v1 import qr_service_pb2 as qr  # noqa: E402


def handle(delivery):
    """The work: give the coupon, bind the account, write the CRM row. Make it
    idempotent on the event's cursor: delivery is at-least-once."""
    event = delivery.event
    kind = qr.EventType.Name(event.type)
    print(f"handled {event.openid} {kind} delivery={delivery.delivery_count}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--addr", default=os.environ.get("WECHAT_QR_ADDR", "127.0.0.1:50051"))
    parser.add_argument("--group", default="coupons")
    parser.add_argument("--name", default=f"worker-{os.getpid()}")
    parser.add_argument("--max", type=int, default=0)
    args = parser.parse_args()

    stub = groups_grpc.ConsumerGroupServiceStub(grpc.insecure_channel(args.addr))
    try:
        # Settings are fixed at creation: here, SUBSCRIBE and SCAN only, 30 s to
        # acknowledge, parked as a dead letter after 5 deliveries.
        stub.CreateGroup(
            groups.CreateGroupRequest(
                name=args.group,
                types=[qr.EVENT_TYPE_SUBSCRIBE, qr.EVENT_TYPE_SCAN],
                ack_deadline_seconds=30,
                max_deliveries=5,
            )
        )
    except grpc.RpcError as error:
        if error.code() != grpc.StatusCode.ALREADY_EXISTS:
            raise

    # The request stream: the first message joins, later ones carry acknowledgements.
    outgoing = queue.Queue()
    outgoing.put(groups.ConsumeGroupRequest(group=args.group, member=args.name))

    def requests():
        while (request := outgoing.get()) is not None:
            yield request

    unconfirmed = set()
    handled = 0
    try:
        for response in stub.ConsumeGroup(requests()):
            # `acked_ids`: acknowledgements the service has made durable.
            unconfirmed.difference_update(response.acked_ids)
            acks = []
            for delivery in response.deliveries:
                handle(delivery)
                acks.append(delivery.ack_id)
            if acks:
                unconfirmed.update(acks)
                outgoing.put(groups.ConsumeGroupRequest(ack_ids=acks))
            handled += len(acks)
            if args.max and handled >= args.max and not unconfirmed:
                break
    except grpc.RpcError as error:
        print(f"error: {error.code().name}: {error.details()}", file=sys.stderr)
        return 1
    finally:
        outgoing.put(None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
