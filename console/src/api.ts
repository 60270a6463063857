// The console's one door to the service: the generated TypeScript clients (clients/typescript)
// of QrService and ChannelStatsService over gRPC-Web on the page's own origin (the admin
// listener routes /wechat.qr.v1.* to the same services the gRPC port serves), every call
// carrying the caller token (token.ts), the two console-only endpoints, and the small DOM
// and formatting helpers every view shares.

import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { EventType, QrService, type Event } from "../../clients/typescript/wechat/qr/v1/qr_service_pb.js";
import { ChannelStatsService } from "../../clients/typescript/wechat/qr/v1/channel_stats_pb.js";
import { currentToken, withToken } from "./token.js";

export { EventType };
export type { Event };

const transport = createGrpcWebTransport({
  baseUrl: location.origin,
  useBinaryFormat: true,
  interceptors: [withToken],
});

/** wechat.qr.v1.QrService: CreateTicket, GetImage, StreamEvents. */
export const qr = createClient(QrService, transport);
/** wechat.qr.v1.ChannelStatsService: GetSceneStats, ListScenes. */
export const stats = createClient(ChannelStatsService, transport);

/** What the server tells the page before it draws. */
export interface Info {
  /** The embedded simulator runs: offer "simulate scan". */
  simulator: boolean;
  /** `[[clients]]` are configured: every call needs a caller token, so ask for one up front. */
  auth_required: boolean;
  /** The served AppIDs; with several, every call names the one picked in the header. */
  accounts: string[];
}

/** The AppID picked in the header; empty with one account (the service's only one). */
export function currentAccount(): string {
  return (document.getElementById("account") as HTMLSelectElement | null)?.value ?? "";
}

export async function fetchInfo(): Promise<Info> {
  const response = await fetch("info.json");
  if (!response.ok) throw new Error(`info.json: HTTP ${response.status}`);
  return (await response.json()) as Info;
}

/** Asks the embedded simulator to push a signed scan of `ticket` to the webhook, as WeChat would. */
export async function simulateScan(ticket: string, openid: string, newFollower: boolean): Promise<void> {
  // With `[[clients]]` configured the scan needs the caller token too, as every call does.
  const headers: Record<string, string> = { "content-type": "application/json" };
  const token = currentToken();
  if (token) headers.authorization = `Bearer ${token}`;
  const response = await fetch("simulate-scan", {
    method: "POST",
    headers,
    body: JSON.stringify({ ticket, openid, new_follower: newFollower }),
  });
  const body = await response.text();
  if (!response.ok) throw new Error(`simulate-scan: HTTP ${response.status} ${body}`);
  const answer = JSON.parse(body) as { deliveries: { status: number; body: string }[] };
  const refused = answer.deliveries.find((d) => d.status !== 200 || d.body !== "success");
  if (refused) throw new Error(`the webhook answered ${refused.status} ${refused.body}`);
}

/** WeChat's name for an event type, as the push carried it. */
export function typeName(type: EventType): string {
  switch (type) {
    case EventType.SUBSCRIBE:
      return "subscribe";
    case EventType.SCAN:
      return "SCAN";
    case EventType.UNSUBSCRIBE:
      return "unsubscribe";
    default:
      return "unspecified";
  }
}

/** A failed call as one line: the gRPC code's name and the server's message. */
export function errorText(error: unknown): string {
  if (error instanceof ConnectError) return `${Code[error.code]}: ${error.rawMessage}`;
  return error instanceof Error ? error.message : String(error);
}

export function isCode(error: unknown, code: Code): boolean {
  return error instanceof ConnectError && error.code === code;
}

export function timeText(ts: Timestamp | undefined): string {
  return ts ? timestampDate(ts).toLocaleString() : "—";
}

type Child = Node | string | number | null | undefined | false;

/** `el("td", { class: "n" }, "42")`: an element with attributes and children. */
export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string> = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    node.append(typeof child === "number" ? String(child) : child);
  }
  return node;
}

/** The element with `id`, which index.html must have. */
export function byId<T extends Element = HTMLElement>(id: string): T {
  const node = document.querySelector<T>(`#${id}`);
  if (!node) throw new Error(`index.html has no #${id}`);
  return node;
}

/** One list item describing an event, shared by the Codes panel and the Live view. */
export function eventItem(event: Event, cursor: string): HTMLLIElement {
  const type = typeName(event.type);
  return el(
    "li",
    { class: `event ${type.toLowerCase()}`, "data-type": type, "data-ticket": event.ticket, "data-cursor": cursor },
    el("span", { class: "type" }, type),
    el("span", { class: "who" }, event.openid),
    event.scene ? el("span", { class: "scene" }, `scene ${event.scene}`) : null,
    event.newFollower ? el("span", { class: "badge" }, "new follower") : null,
    el("time", {}, timeText(event.createTime)),
  );
}
