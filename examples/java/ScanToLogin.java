// Scan-to-login: show a one-time QR code and learn which WeChat user scanned it.
//
// The flow a website's login page runs:
//  1. mint a temporary code whose scene is a fresh random nonce (one code per login attempt);
//  2. save its image for the page to show;
//  3. open StreamEvents filtered to that ticket *before* showing the code, so no scan can
//     slip in between;
//  4. wait, up to a deadline, for the SUBSCRIBE (a new follower) or SCAN (an existing one):
//     its openid is the user who logged in.
// If the stream drops on the way (a broken connection, a proxy restarting, the service
// shutting down), it reopens the stream with `resume_after` set to the cursor of the last
// event it processed: the service replays what it missed in between, once. (A cursor the
// service no longer holds answers OUT_OF_RANGE, an error here.)
//
// Output, one `key=value` per line on stdout (flushed as it happens):
//   ticket=<TICKET>    the code is on screen and the stream is listening
//   openid=<OPENID>    the user who scanned; exit 0 (after --scans of them, default 1)
// Exit 2 when the scans did not all come before the deadline, 1 on any other error.
//
//   examples/java/build /tmp/scan_to_login.jar
//   java -jar /tmp/scan_to_login.jar --image login.jpg --deadline 120
//
// The gRPC address comes from --addr, else $WECHAT_QR_ADDR, else 127.0.0.1:50051.
// --scans N waits for N scans of the one code (a code on a shared screen that several
// people scan), printing an openid= line for each.
//
// With [[clients]] configured (README, "Accounts and access") it needs its client's token:
// --token, else $WECHAT_QR_TOKEN (better: a flag is visible in `ps`), sent as
// `authorization: Bearer <token>` on every call and never printed. When the service serves
// TLS, --ca names the PEM CA that issued its certificate; without --ca it talks plaintext.
//
//   java -jar /tmp/scan_to_login.jar --image login.jpg --token s3cret --ca ca.pem

import io.grpc.CallOptions;
import io.grpc.Channel;
import io.grpc.ClientCall;
import io.grpc.Deadline;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.grpc.Metadata;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.netty.NettyChannelBuilder;
import io.grpc.stub.MetadataUtils;
import io.netty.handler.ssl.JdkAlpnClientContext;
import java.io.IOException;
import java.math.BigDecimal;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.SecureRandom;
import java.util.HexFormat;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import wechat.qr.v1.QrServiceGrpc;
import wechat.qr.v1.QrServiceOuterClass.CreateTicketRequest;
import wechat.qr.v1.QrServiceOuterClass.CreateTicketResponse;
import wechat.qr.v1.QrServiceOuterClass.Event;
import wechat.qr.v1.QrServiceOuterClass.EventType;
import wechat.qr.v1.QrServiceOuterClass.GetImageRequest;
import wechat.qr.v1.QrServiceOuterClass.GetImageResponse;
import wechat.qr.v1.QrServiceOuterClass.StreamEventsRequest;
import wechat.qr.v1.QrServiceOuterClass.StreamEventsResponse;

public final class ScanToLogin {
  /** A login code only needs to live as long as the login page is open. */
  private static final int TICKET_LIFETIME_SECONDS = 300;
  /** Waits between attempts to reopen a dropped stream: doubling, at most this. */
  private static final long MAX_BACKOFF_MILLIS = 5_000;

  private static final String USAGE =
      "usage: scan_to_login [--addr HOST:PORT] --image FILE [--deadline SECONDS] [--scans N]"
          + " [--token TOKEN] [--ca FILE]";

  public static void main(String[] argv) {
    Args args;
    try {
      args = Args.parse(argv);
    } catch (IllegalArgumentException e) {
      System.err.println(e.getMessage());
      System.err.println(USAGE);
      System.exit(1);
      return;
    }
    ManagedChannel channel;
    try {
      channel = channel(args);
    } catch (IOException e) {
      // An unreadable file, or one with no PEM certificate in it.
      System.err.println("--ca " + args.ca + ": " + e.getMessage());
      System.exit(1);
      return;
    }
    int code;
    try {
      code = run(channel, args);
    } catch (StatusRuntimeException e) {
      Status status = e.getStatus();
      System.err.println("gRPC error: " + status.getCode() + ": " + status.getDescription());
      code = 1;
    } catch (IOException e) {
      System.err.println(e);
      code = 1;
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      code = 1;
    } finally {
      channel.shutdownNow();
    }
    System.exit(code);
  }

  /**
   * The channel to the service: TLS trusting --ca, else plaintext HTTP/2 (as `cargo run`
   * listens); with a token, every call on it (the EventStream's own ClientCalls included)
   * carries `authorization: Bearer <token>`. The TLS is the JDK's own, with ALPN (see
   * io/netty/handler/ssl/JdkAlpnClientContext.java for why not GrpcSslContexts).
   */
  static ManagedChannel channel(Args args) throws IOException {
    ManagedChannelBuilder<?> builder =
        args.ca == null
            ? ManagedChannelBuilder.forTarget(args.addr).usePlaintext()
            : NettyChannelBuilder.forTarget(args.addr)
                .sslContext(JdkAlpnClientContext.forClient(args.ca.toFile()));
    if (args.token != null) {
      Metadata headers = new Metadata();
      headers.put(
          Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER),
          "Bearer " + args.token);
      builder.intercept(MetadataUtils.newAttachHeadersInterceptor(headers));
    }
    return builder.build();
  }

  /** Mints the code, saves its image, and waits for the scans of it. */
  static int run(ManagedChannel channel, Args args) throws IOException, InterruptedException {
    QrServiceGrpc.QrServiceBlockingStub client = QrServiceGrpc.newBlockingStub(channel);

    byte[] nonce = new byte[8];
    new SecureRandom().nextBytes(nonce);
    CreateTicketResponse created =
        client
            .withDeadlineAfter(10, TimeUnit.SECONDS)
            .createTicket(
                CreateTicketRequest.newBuilder()
                    .setSceneStr("login-" + HexFormat.of().formatHex(nonce))
                    .setExpireSeconds(TICKET_LIFETIME_SECONDS)
                    .build());
    GetImageResponse image =
        client
            .withDeadlineAfter(10, TimeUnit.SECONDS)
            .getImage(GetImageRequest.newBuilder().setTicket(created.getTicket()).build());
    Files.write(args.image, image.getImage().toByteArray());
    System.err.printf(
        "saved %d bytes of %s to %s%n",
        image.getImage().size(), image.getContentType(), args.image);

    StreamEventsRequest filter =
        StreamEventsRequest.newBuilder()
            .addTickets(created.getTicket())
            .addTypes(EventType.EVENT_TYPE_SUBSCRIBE)
            .addTypes(EventType.EVENT_TYPE_SCAN)
            .build();
    // The deadline covers the wait for the scans, every reopened stream included.
    Deadline deadline =
        Deadline.after(Math.round(args.deadlineSeconds * 1000), TimeUnit.MILLISECONDS);
    // The cursor of the last event processed: a reopened stream resumes after it.
    String lastCursor = "";
    int scanned = 0;
    boolean shown = false;
    long backoffMillis = 100;
    while (true) {
      // Same filter on every stream; only resume_after moves.
      StreamEventsRequest request = filter.toBuilder().setResumeAfter(lastCursor).build();
      EventStream events =
          EventStream.open(channel, CallOptions.DEFAULT.withDeadline(deadline), request);
      try {
        // The service answers the stream's headers once the subscription is in place, so
        // after this every scan of the ticket reaches us: only now show the code.
        events.awaitHeaders();
        if (!shown) {
          say("ticket=" + created.getTicket());
          shown = true;
        } else {
          String after = request.getResumeAfter();
          System.err.println(
              "stream reopened, resume_after=" + (after.isEmpty() ? "(none)" : after));
        }
        backoffMillis = 100;
        while (true) {
          StreamEventsResponse response = events.next();
          if (response == null) {
            System.err.println("the event stream ended before a scan");
            return 1;
          }
          Event event = response.getEvent();
          System.err.printf(
              "%s new_follower=%b scene=%s cursor=%s%n",
              event.getType(), event.getNewFollower(), event.getScene(), response.getCursor());
          say("openid=" + event.getOpenid());
          lastCursor = response.getCursor();
          if (++scanned == args.scans) {
            events.cancel();
            return 0;
          }
        }
      } catch (StatusRuntimeException e) {
        Status status = e.getStatus();
        if (status.getCode() == Status.Code.DEADLINE_EXCEEDED) {
          return gaveUp(args, scanned);
        }
        // UNAVAILABLE: the connection broke, or the service is shutting down (its message
        // then names a resume_after too: the last cursor it sent, never older than the last
        // one we processed, which is the one to resume after). Anything else is an error.
        if (status.getCode() != Status.Code.UNAVAILABLE) {
          throw e;
        }
        if (lastCursor.isEmpty()) {
          // Cursors come with events: before the first one there is nothing to resume
          // after, so the reopened stream starts live and a scan in the gap is not seen.
          // A login page would show a fresh code if this one stays silent.
          System.err.printf(
              "stream dropped (UNAVAILABLE: %s) before any event; reopening it live%n",
              status.getDescription());
        } else {
          System.err.printf(
              "stream dropped (UNAVAILABLE: %s); resuming after %s%n",
              status.getDescription(), lastCursor);
        }
      }
      long left = deadline.timeRemaining(TimeUnit.MILLISECONDS);
      if (left <= 0) {
        return gaveUp(args, scanned);
      }
      Thread.sleep(Math.min(backoffMillis, left));
      backoffMillis = Math.min(backoffMillis * 2, MAX_BACKOFF_MILLIS);
    }
  }

  private static int gaveUp(Args args, int scanned) {
    String seconds = BigDecimal.valueOf(args.deadlineSeconds).stripTrailingZeros().toPlainString();
    if (scanned == 0) {
      System.err.printf("nobody scanned within %s s%n", seconds);
    } else {
      System.err.printf("%d of %d scans within %s s%n", scanned, args.scans, seconds);
    }
    return 2;
  }

  /** One stdout line, flushed: the caller acts on it at once. */
  private static void say(String line) {
    System.out.println(line);
    System.out.flush();
  }

  /**
   * One StreamEvents call, read one response at a time. A ClientCall rather than the
   * blocking stub, whose iterator hides the response headers: they are the service's word
   * that the subscription is in place.
   */
  static final class EventStream extends ClientCall.Listener<StreamEventsResponse> {
    private static final Object HEADERS = new Object();
    /** HEADERS, then responses, then the closing Status. */
    private final BlockingQueue<Object> inbox = new LinkedBlockingQueue<>();
    private final ClientCall<StreamEventsRequest, StreamEventsResponse> call;

    private EventStream(ClientCall<StreamEventsRequest, StreamEventsResponse> call) {
      this.call = call;
    }

    static EventStream open(Channel channel, CallOptions options, StreamEventsRequest request) {
      EventStream stream =
          new EventStream(channel.newCall(QrServiceGrpc.getStreamEventsMethod(), options));
      stream.call.start(stream, new Metadata());
      stream.call.sendMessage(request);
      stream.call.halfClose();
      stream.call.request(1);
      return stream;
    }

    @Override
    public void onHeaders(Metadata headers) {
      inbox.add(HEADERS);
    }

    @Override
    public void onMessage(StreamEventsResponse message) {
      inbox.add(message);
    }

    @Override
    public void onClose(Status status, Metadata trailers) {
      inbox.add(status);
    }

    /** Returns once the headers came; throws the status if the call ended first. */
    void awaitHeaders() throws InterruptedException {
      Object item = inbox.take();
      if (item instanceof Status status) {
        throw status.asRuntimeException();
      }
    }

    /** The next response; null when the stream ended OK; throws any other end. */
    StreamEventsResponse next() throws InterruptedException {
      Object item = inbox.take();
      if (item instanceof Status status) {
        if (status.isOk()) {
          return null;
        }
        throw status.asRuntimeException();
      }
      call.request(1);
      return (StreamEventsResponse) item;
    }

    void cancel() {
      call.cancel("done", null);
    }
  }

  /** The command line: --flag value or --flag=value. */
  static final class Args {
    String addr = System.getenv().getOrDefault("WECHAT_QR_ADDR", "127.0.0.1:50051");
    Path image;
    double deadlineSeconds = 120;
    int scans = 1;
    /** The client's bearer token; null = none (an empty $WECHAT_QR_TOKEN too). */
    String token = emptyToNull(System.getenv("WECHAT_QR_TOKEN"));
    /** The PEM CA that issued the service's certificate; null = plaintext. */
    Path ca;

    private static String emptyToNull(String value) {
      return value == null || value.isEmpty() ? null : value;
    }

    static Args parse(String[] argv) {
      Args args = new Args();
      for (int i = 0; i < argv.length; i++) {
        String flag = argv[i];
        String value = null;
        int eq = flag.indexOf('=');
        if (flag.startsWith("--") && eq > 0) {
          value = flag.substring(eq + 1);
          flag = flag.substring(0, eq);
        }
        if (flag.equals("-h") || flag.equals("--help")) {
          System.out.println(USAGE);
          System.exit(0);
        }
        if (value == null) {
          if (i + 1 == argv.length) {
            throw new IllegalArgumentException(flag + " needs a value");
          }
          value = argv[++i];
        }
        try {
          switch (flag) {
            case "--addr" -> args.addr = value;
            case "--image" -> args.image = Path.of(value);
            case "--deadline" -> args.deadlineSeconds = Double.parseDouble(value);
            case "--scans" -> args.scans = Integer.parseInt(value);
            case "--token" -> args.token = emptyToNull(value);
            case "--ca" -> args.ca = Path.of(value);
            default -> throw new IllegalArgumentException("unknown flag " + flag);
          }
        } catch (NumberFormatException e) {
          throw new IllegalArgumentException(flag + ": not a number: " + value);
        }
      }
      if (args.image == null) {
        throw new IllegalArgumentException("--image is required");
      }
      if (!(args.deadlineSeconds > 0) || args.scans < 1) {
        throw new IllegalArgumentException("--deadline must be > 0 and --scans >= 1");
      }
      return args;
    }
  }
}
