// Channel attribution: which poster brings followers?
//
// Mints one permanent code per marketing channel (the channel name is the code's
// scene_str), prints each ticket, then watches the scan events of those scenes and keeps
// a tally of new followers per channel: a SUBSCRIBE with `newFollower` is a follow the
// poster brought; a SCAN is someone who already followed, and does not count.
//
// Output on stdout, one line each:
//   ticket <channel>=<TICKET>                      once per channel, after the stream listens
//   follows poster-metro=2 poster-mall=0 ...       after every event, the running tally
// It exits 0 after --events events, 2 if --deadline seconds pass first, 1 on other errors.
//
//   node_modules/.bin/tsx examples/typescript/channel_attribution.ts --events 10
//
// The gRPC address comes from --addr, else $WECHAT_QR_ADDR, else 127.0.0.1:50051.
// Channels are the positional arguments (default: poster-metro poster-mall poster-web).
// Permanent codes are scarce (100,000 per account, ever): the service remembers the ones
// it minted and hands back the same ticket for the same scene, so rerunning costs none.

import { parseArgs } from "node:util";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { EventType, QrService } from "../../clients/typescript/wechat/qr/v1/qr_service_pb.js";

const { values, positionals } = parseArgs({
  options: {
    addr: { type: "string", default: process.env.WECHAT_QR_ADDR ?? "127.0.0.1:50051" },
    events: { type: "string", default: "10" },
    deadline: { type: "string" },
  },
  allowPositionals: true,
});
const channels =
  positionals.length > 0 ? positionals : ["poster-metro", "poster-mall", "poster-web"];
const eventLimit = Number(values.events);
const deadlineMs = values.deadline === undefined ? undefined : Number(values.deadline) * 1000;
if (!Number.isInteger(eventLimit) || eventLimit < 1 || Number.isNaN(deadlineMs)) {
  console.error("usage: channel_attribution.ts [--addr HOST:PORT] [--events N] [--deadline SECONDS] [CHANNEL...]");
  process.exit(1);
}

// Plaintext HTTP/2, as the service listens; the gRPC protocol, not Connect's own.
const transport = createGrpcTransport({ baseUrl: `http://${values.addr}` });
const client = createClient(QrService, transport);

async function main(): Promise<number> {
  const tickets = new Map<string, string>();
  for (const channel of channels) {
    const created = await client.createTicket(
      { scene: { case: "sceneStr", value: channel }, permanent: true },
      { timeoutMs: 10_000 },
    );
    tickets.set(channel, created.ticket);
  }

  // Listen before the codes go out, so the first scan is counted too. The service sends
  // the stream's headers once the subscription is in place; connect reports them when
  // the stream is first read, so start reading and wait for whichever comes first.
  let listening!: () => void;
  const subscribed = new Promise<void>((resolve) => (listening = resolve));
  const events = client
    .streamEvents(
      { scenes: channels, types: [EventType.SUBSCRIBE, EventType.SCAN] },
      { onHeader: () => listening(), timeoutMs: deadlineMs },
    )
    [Symbol.asyncIterator]();
  const first = events.next();
  await Promise.race([subscribed, first]);
  for (const [channel, ticket] of tickets) {
    console.log(`ticket ${channel}=${ticket}`);
  }

  const follows = new Map(channels.map((channel) => [channel, 0]));
  let seen = 0;
  for (let next = await first; !next.done; next = await events.next()) {
    const event = next.value.event;
    if (event === undefined) continue;
    const followed = event.type === EventType.SUBSCRIBE && event.newFollower;
    if (followed) {
      follows.set(event.scene, (follows.get(event.scene) ?? 0) + 1);
    }
    const why = followed ? " (new follower)" : "";
    console.error(`${EventType[event.type]} ${event.scene} by ${event.openid}${why}`);
    const tally = [...follows].map(([channel, n]) => `${channel}=${n}`);
    console.log(`follows ${tally.join(" ")}`);
    seen += 1;
    if (seen >= eventLimit) return 0;
  }
  console.error("the event stream ended");
  return 1;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    const failure = ConnectError.from(error);
    if (failure.code === Code.DeadlineExceeded) {
      console.error(`deadline of ${values.deadline} s reached`);
      process.exit(2);
    }
    console.error(`gRPC error: ${Code[failure.code]}: ${failure.rawMessage}`);
    process.exit(1);
  },
);
