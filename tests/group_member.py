"""One member of a consumer group, on the generated Python stubs (clients/python), for
tests/groups.rs. It joins GROUP on ADDR over ConsumeGroup and prints one line per thing
that happens, flushed at once, so the test can count across processes and kills:

  got <ack_id> <delivery_count> <openid>   an event was delivered to this member
  sent <ack_id>                            an ack is about to be sent (before the server has it)
  acked <ack_id>                           the server confirmed the ack durable
  nacked <ack_id>                          the event was given back

MODE: `ack` acknowledges everything; `hold` acknowledges nothing (a member that hangs or
dies holding events); `poison` gives back every event whose openid contains "poison" and
acknowledges the rest. An optional fifth argument is milliseconds of "work" per
response before its acknowledgements go out. Exits 0 when the server ends the stream, 1 on an error status.
"""

import queue
import sys
import time

import grpc

from wechat.qr.v1 import consumer_groups_pb2 as groups_pb2
from wechat.qr.v1 import consumer_groups_pb2_grpc as groups_grpc


def main():
    addr, group, member, mode = sys.argv[1:5]
    work = float(sys.argv[5]) / 1000 if len(sys.argv) > 5 else 0
    outgoing = queue.Queue()
    outgoing.put(groups_pb2.ConsumeGroupRequest(group=group, member=member))

    def requests():
        while True:
            request = outgoing.get()
            if request is None:
                return
            yield request

    channel = grpc.insecure_channel(addr)
    stub = groups_grpc.ConsumerGroupServiceStub(channel)
    print("joined", flush=True)
    try:
        for response in stub.ConsumeGroup(requests()):
            for ack_id in response.acked_ids:
                print(f"acked {ack_id}", flush=True)
            acks, nacks = [], []
            for delivery in response.deliveries:
                print(
                    f"got {delivery.ack_id} {delivery.delivery_count} {delivery.event.openid}",
                    flush=True,
                )
                if mode == "poison" and "poison" in delivery.event.openid:
                    nacks.append(delivery.ack_id)
                elif mode in ("ack", "poison"):
                    acks.append(delivery.ack_id)
            for ack_id in acks:
                print(f"sent {ack_id}", flush=True)
            for ack_id in nacks:
                print(f"nacked {ack_id}", flush=True)
            if work and response.deliveries:
                time.sleep(work)
            if acks or nacks:
                outgoing.put(groups_pb2.ConsumeGroupRequest(ack_ids=acks, nack_ids=nacks))
    except grpc.RpcError as error:
        print(f"ended {error.code().name} {error.details()}", flush=True)
        outgoing.put(None)
        sys.exit(1)
    outgoing.put(None)


if __name__ == "__main__":
    main()
