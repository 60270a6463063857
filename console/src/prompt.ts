// The token prompt: a password field shown when the server says a call needs a caller
// token (UNAUTHENTICATED) — or up front, when info.json says callers must authenticate
// and this tab has none — and the server's own message when the token's client lacks a
// permission (PERMISSION_DENIED names it). Entering a token hides the prompt until the
// server refuses again; "Forget token" drops it from the tab.

import { Code } from "@connectrpc/connect";
import { byId } from "./api.js";
import { currentToken, onRefusal, onTokenChange, setToken, type Refusal } from "./token.js";

export function initPrompt(authRequired: boolean): void {
  const input = byId<HTMLInputElement>("token-input");
  byId<HTMLFormElement>("token-form").addEventListener("submit", (submit) => {
    submit.preventDefault();
    const value = input.value.trim();
    if (!value) return;
    input.value = "";
    byId("token-panel").hidden = true;
    setToken(value);
  });
  byId("token-forget").addEventListener("click", () => setToken(""));
  onRefusal(show);
  onTokenChange(() => {
    badge();
    if (authRequired && !currentToken()) askUpFront();
  });
  badge();
  if (authRequired && !currentToken()) askUpFront();
}

function askUpFront(): void {
  ask("unauthenticated", "A caller token is needed", "This service lets only configured clients call it. Enter your client's token.");
}

function show(refusal: Refusal): void {
  if (refusal.code === Code.PermissionDenied) {
    ask(
      "denied",
      "Not allowed with this token",
      `The service answered: ${refusal.message}. Enter the token of a client that has it.`,
    );
  } else if (currentToken()) {
    ask("unauthenticated", "This token was refused", `The service answered: ${refusal.message}. Enter a valid caller token.`);
  } else {
    ask("unauthenticated", "A caller token is needed", `The service answered: ${refusal.message}.`);
  }
}

function ask(reason: string, title: string, message: string): void {
  const panel = byId("token-panel");
  panel.dataset.reason = reason;
  byId("token-title").textContent = title;
  byId("token-message").textContent = message;
  panel.hidden = false;
}

/** The header's note of whether a token is in use, and its "Forget token" button. */
function badge(): void {
  const has = currentToken() !== "";
  byId("token-state").textContent = has ? "caller token set" : "";
  byId("token-forget").hidden = !has;
}
