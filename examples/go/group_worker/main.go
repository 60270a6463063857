// Command group_worker is a back-end worker in a consumer group: each event goes to one
// worker of the group.
//
// Run it as many times as you run replicas; every replica joins the same group and the
// service hands each scan to one of them. The flow:
//  1. create the group once (ALREADY_EXISTS from the second replica on is fine);
//  2. open ConsumeGroup: events come out, acknowledgements go back on the same stream;
//  3. handle each event, then acknowledge it. An event not acknowledged within the
//     group's ack deadline (a worker that crashed, hung or was killed) goes to another.
//
// Output, one line per event handled:
//
//	handled <openid> <event type> delivery=<n>
//
// Exit 0 when the stream ends, 1 on an error status.
//
//	examples/go/build /tmp/group_worker group_worker && /tmp/group_worker -group coupons -name worker-1
//
// The gRPC address comes from -addr, else $WECHAT_QR_ADDR, else 127.0.0.1:50051.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	qrv1 "wechat-qr/clients/go/wechat/qr/v1"
)

func main() {
	defaultAddr := os.Getenv("WECHAT_QR_ADDR")
	if defaultAddr == "" {
		defaultAddr = "127.0.0.1:50051"
	}
	addr := flag.String("addr", defaultAddr, "the service's gRPC address")
	group := flag.String("group", "coupons", "the consumer group")
	name := flag.String("name", fmt.Sprintf("worker-%d", os.Getpid()), "this member's name")
	flag.Parse()
	if err := run(*addr, *group, *name); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

// handle is the work: give the coupon, bind the account, write the CRM row. Make it
// idempotent on the delivery's AckId (the event's cursor): delivery is at-least-once.
func handle(d *qrv1.GroupDelivery) {
	fmt.Printf("handled %s %s delivery=%d\n", d.Event.Openid, d.Event.Type, d.DeliveryCount)
}

func run(addr, group, name string) error {
	// Plaintext HTTP/2, as the service listens (Debian's gRPC 1.33 predates
	// credentials/insecure).
	conn, err := grpc.Dial(addr, grpc.WithInsecure())
	if err != nil {
		return err
	}
	defer conn.Close()
	client := qrv1.NewConsumerGroupServiceClient(conn)
	ctx := context.Background()

	// Settings are fixed at creation: SUBSCRIBE and SCAN only, 30 s to acknowledge,
	// parked as a dead letter after 5 deliveries.
	_, err = client.CreateGroup(ctx, &qrv1.CreateGroupRequest{
		Name:               group,
		Types:              []qrv1.EventType{qrv1.EventType_EVENT_TYPE_SUBSCRIBE, qrv1.EventType_EVENT_TYPE_SCAN},
		AckDeadlineSeconds: 30,
		MaxDeliveries:      5,
	})
	if err != nil && status.Code(err) != codes.AlreadyExists {
		return err
	}

	stream, err := client.ConsumeGroup(ctx)
	if err != nil {
		return err
	}
	// The first message joins; later ones carry acknowledgements.
	if err := stream.Send(&qrv1.ConsumeGroupRequest{Group: group, Member: name}); err != nil {
		return err
	}
	for {
		response, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		// response.AckedIds confirms acknowledgements the service has made durable.
		var acks []string
		for _, delivery := range response.Deliveries {
			handle(delivery)
			acks = append(acks, delivery.AckId)
		}
		if len(acks) > 0 {
			if err := stream.Send(&qrv1.ConsumeGroupRequest{AckIds: acks}); err != nil {
				return err
			}
		}
	}
}
