// A StreamEvents subscription that survives drops: when the stream breaks it reconnects
// with the same filters and `resume_after` set to the last cursor it delivered, so no
// retained event is lost or shown twice; it backs off from 0.5 s up to 8 s between tries.
// Refused by the caller check, it waits for another token instead of retrying; when the
// token changes it drops the connection made with the old one and reconnects at once, after
// the same cursor, with the new one. Codes' live panel, Channels' refresh trigger and the
// Live view all run on it.

import { Code } from "@connectrpc/connect";
import { errorText, isCode, qr, type Event, type EventType } from "./api.js";
import { isRefusal, nextTokenChange, onTokenChange } from "./token.js";

export interface Filters {
  tickets?: string[];
  scenes?: string[];
  accounts?: string[];
  types?: EventType[];
}

export type StreamState =
  | { kind: "connecting" }
  | { kind: "live" }
  | { kind: "reconnecting"; reason: string; inMs: number }
  | { kind: "refused"; reason: string }
  | { kind: "stopped" };

export interface Handlers {
  event(event: Event, cursor: string): void;
  state?(state: StreamState): void;
}

export interface Follow {
  /** The cursor of the last delivered event ("" before the first). */
  cursor(): string;
  /** Drops the current connection as a network failure would; the stream resumes after its cursor. */
  drop(): void;
  /** Ends the subscription for good. */
  stop(): void;
}

const FIRST_BACKOFF_MS = 500;
const MAX_BACKOFF_MS = 8_000;

/** Follows the events matching `filters`, starting after `resumeAfter` (or live when empty). */
export function follow(filters: Filters, handlers: Handlers, resumeAfter = ""): Follow {
  const stopped = new AbortController();
  let attempt: AbortController | undefined;
  let cursor = resumeAfter;
  const report = (state: StreamState) => handlers.state?.(state);
  /** The token changed since this attempt began: what it brings is not to be shown. */
  let retokened = false;
  const unsubscribe = onTokenChange(() => {
    retokened = true;
    attempt?.abort();
  });

  (async () => {
    let backoff = FIRST_BACKOFF_MS;
    while (!stopped.signal.aborted) {
      attempt = new AbortController();
      retokened = false;
      const signal = AbortSignal.any([stopped.signal, attempt.signal]);
      let reason = "the stream ended";
      report({ kind: "connecting" });
      try {
        const stream = qr.streamEvents(
          { ...filters, resumeAfter: cursor },
          // Headers arrive once the server has registered the subscription: from here on
          // no event is missed.
          { signal, onHeader: () => report({ kind: "live" }) },
        );
        for await (const response of stream) {
          if (retokened) break;
          if (!response.event) continue;
          cursor = response.cursor;
          backoff = FIRST_BACKOFF_MS;
          handlers.event(response.event, response.cursor);
        }
      } catch (error) {
        if (stopped.signal.aborted) break;
        if (retokened) continue;
        if (isRefusal(error)) {
          report({ kind: "refused", reason: errorText(error) });
          if (!retokened) await nextTokenChange(stopped.signal);
          backoff = FIRST_BACKOFF_MS;
          continue;
        }
        reason = attempt.signal.aborted ? "dropped" : errorText(error);
        if (isCode(error, Code.OutOfRange)) {
          // The cursor is older than the retained log: what it missed is gone; go on live.
          reason = `${reason} (events were lost; following live from now)`;
          cursor = "";
        }
      }
      if (stopped.signal.aborted) break;
      if (retokened) continue;
      report({ kind: "reconnecting", reason, inMs: backoff });
      await sleep(backoff, stopped.signal);
      backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
    }
    unsubscribe();
    report({ kind: "stopped" });
  })();

  return {
    cursor: () => cursor,
    drop: () => attempt?.abort(),
    stop: () => stopped.abort(),
  };
}

/** A one-line description of a stream state, for the views' status badges. */
export function stateText(state: StreamState): string {
  switch (state.kind) {
    case "connecting":
      return "connecting…";
    case "live":
      return "live";
    case "reconnecting":
      return `reconnecting in ${(state.inMs / 1000).toFixed(1)} s: ${state.reason}`;
    case "refused":
      return `refused: ${state.reason}`;
    case "stopped":
      return "stopped";
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    });
  });
}
