// Command scan_to_login shows a one-time QR code and learns which WeChat user scanned it.
//
// The flow a website's login page runs:
//  1. mint a temporary code whose scene is a fresh random nonce (one code per login attempt);
//  2. save its image for the page to show;
//  3. open StreamEvents filtered to that ticket before showing the code, so no scan can
//     slip in between;
//  4. wait, up to a deadline, for the SUBSCRIBE (a new follower) or SCAN (an existing
//     one): its openid is the user who logged in.
//
// Output, one key=value per line on stdout:
//
//	ticket=<TICKET>    the code is on screen and the stream is listening
//	openid=<OPENID>    the user who scanned; exit 0
//
// Exit 2 when nobody scanned before the deadline, 1 on any other error.
//
//	examples/go/build /tmp/scan_to_login && /tmp/scan_to_login -image login.jpg -deadline 2m
//
// The gRPC address comes from -addr, else $WECHAT_QR_ADDR, else 127.0.0.1:50051.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	qrv1 "wechat-qr/clients/go/wechat/qr/v1"
)

// A login code only needs to live as long as the login page is open.
const ticketLifetimeSeconds = 300

func main() {
	defaultAddr := os.Getenv("WECHAT_QR_ADDR")
	if defaultAddr == "" {
		defaultAddr = "127.0.0.1:50051"
	}
	addr := flag.String("addr", defaultAddr, "the service's gRPC address")
	imagePath := flag.String("image", "", "where to save the QR JPEG (required)")
	deadline := flag.Duration("deadline", 2*time.Minute, "how long to wait for the scan")
	flag.Parse()
	if *imagePath == "" {
		flag.Usage()
		os.Exit(1)
	}

	openid, err := run(*addr, *imagePath, *deadline)
	switch {
	case err == nil:
		fmt.Printf("openid=%s\n", openid)
	case status.Code(err) == codes.DeadlineExceeded:
		fmt.Fprintf(os.Stderr, "nobody scanned within %s\n", *deadline)
		os.Exit(2)
	default:
		fmt.Fprintf(os.Stderr, "%v\n", err)
		os.Exit(1)
	}
}

// run mints the code, saves its image, and waits for the first scan of it.
func run(addr, imagePath string, deadline time.Duration) (string, error) {
	// Plaintext HTTP/2, as the service listens. (grpc.WithInsecure: the Go gRPC this
	// builds against, Debian's 1.33, predates credentials/insecure.)
	conn, err := grpc.Dial(addr, grpc.WithInsecure())
	if err != nil {
		return "", err
	}
	defer conn.Close()
	client := qrv1.NewQrServiceClient(conn)

	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()

	nonce := make([]byte, 8)
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	created, err := client.CreateTicket(ctx, &qrv1.CreateTicketRequest{
		Scene:         &qrv1.CreateTicketRequest_SceneStr{SceneStr: "login-" + hex.EncodeToString(nonce)},
		ExpireSeconds: ticketLifetimeSeconds,
	})
	if err != nil {
		return "", fmt.Errorf("CreateTicket: %w", err)
	}
	image, err := client.GetImage(ctx, &qrv1.GetImageRequest{Ticket: created.Ticket})
	if err != nil {
		return "", fmt.Errorf("GetImage: %w", err)
	}
	if err := os.WriteFile(imagePath, image.Image, 0o644); err != nil {
		return "", err
	}
	fmt.Fprintf(os.Stderr, "saved %d bytes of %s to %s\n",
		len(image.Image), image.ContentType, imagePath)

	events, err := client.StreamEvents(ctx, &qrv1.StreamEventsRequest{
		Tickets: []string{created.Ticket},
		Types:   []qrv1.EventType{qrv1.EventType_EVENT_TYPE_SUBSCRIBE, qrv1.EventType_EVENT_TYPE_SCAN},
	})
	if err != nil {
		return "", fmt.Errorf("StreamEvents: %w", err)
	}
	// The service answers the stream's headers once the subscription is in place, so
	// after this every scan of the ticket reaches us: only now show the code.
	if _, err := events.Header(); err != nil {
		return "", fmt.Errorf("StreamEvents: %w", err)
	}
	fmt.Printf("ticket=%s\n", created.Ticket)

	response, err := events.Recv()
	if errors.Is(err, io.EOF) {
		return "", errors.New("the event stream ended before a scan")
	}
	if err != nil {
		return "", err
	}
	event := response.GetEvent()
	fmt.Fprintf(os.Stderr, "%s new_follower=%t scene=%s\n",
		event.GetType(), event.GetNewFollower(), event.GetScene())
	return event.GetOpenid(), nil
}
