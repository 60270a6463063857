// The caller token: when `[[clients]]` are configured every QrService and
// ChannelStatsService call needs `authorization: Bearer <token>`, the console's gRPC-Web
// included. The token the operator enters is kept in this tab's sessionStorage only (never
// localStorage, never the URL: it is gone when the tab closes and no link carries it), and
// an interceptor on the transport sends it on every call. The same interceptor reports
// refusals (UNAUTHENTICATED, PERMISSION_DENIED) made with the current token, so the prompt
// (prompt.ts) asks or explains wherever the call came from; refusals of a token already
// replaced are ignored. Views listen for token changes to drop what they show and ask again.

import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";

const STORAGE_KEY = "wechat-qr.caller-token";

/** Why a call made with the current token was refused. */
export interface Refusal {
  code: Code.Unauthenticated | Code.PermissionDenied;
  /** The server's message: what was missing, or which permission the client lacks. */
  message: string;
}

let token = sessionStorage.getItem(STORAGE_KEY) ?? "";
const changeListeners: (() => void)[] = [];
const refusalListeners: ((refusal: Refusal) => void)[] = [];

/** The token calls are sent with ("" when none). */
export function currentToken(): string {
  return token;
}

/** Replaces the token ("" forgets it) and tells every listener, even if it is the same. */
export function setToken(value: string): void {
  token = value.trim();
  if (token) sessionStorage.setItem(STORAGE_KEY, token);
  else sessionStorage.removeItem(STORAGE_KEY);
  // A copy: a one-shot listener removes itself while this runs.
  for (const listener of [...changeListeners]) listener();
}

/** Calls `listener` after every `setToken`, until the returned function is called. */
export function onTokenChange(listener: () => void): () => void {
  changeListeners.push(listener);
  return () => {
    const at = changeListeners.indexOf(listener);
    if (at >= 0) changeListeners.splice(at, 1);
  };
}

/** Calls `listener` when a call made with the current token is refused. */
export function onRefusal(listener: (refusal: Refusal) => void): void {
  refusalListeners.push(listener);
}

/** Whether `error` is a refusal by the caller check, not a failure of the call itself. */
export function isRefusal(error: unknown): error is ConnectError {
  return (
    error instanceof ConnectError && (error.code === Code.Unauthenticated || error.code === Code.PermissionDenied)
  );
}

/** Resolves at the next token change, or when `signal` aborts. */
export function nextTokenChange(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const unsubscribe = onTokenChange(done);
    signal.addEventListener("abort", done, { once: true });
    if (signal.aborted) done();
    function done() {
      unsubscribe();
      resolve();
    }
  });
}

function report(error: unknown, sentWith: string): void {
  if (!isRefusal(error) || sentWith !== token) return;
  const refusal: Refusal = {
    code: error.code as Refusal["code"],
    message: error.rawMessage,
  };
  for (const listener of refusalListeners) listener(refusal);
}

/** Sends the token on every call and reports refusals; streams report theirs when they end. */
export const withToken: Interceptor = (next) => async (request) => {
  const sentWith = token;
  if (sentWith) request.header.set("authorization", `Bearer ${sentWith}`);
  try {
    const response = await next(request);
    if (!response.stream) return response;
    return { ...response, message: reporting(response.message, sentWith) };
  } catch (error) {
    report(error, sentWith);
    throw error;
  }
};

async function* reporting<T>(messages: AsyncIterable<T>, sentWith: string): AsyncIterable<T> {
  try {
    yield* messages;
  } catch (error) {
    report(error, sentWith);
    throw error;
  }
}
