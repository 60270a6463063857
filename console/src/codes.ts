// The Codes view: mint a code (CreateTicket), show its QR image (GetImage's bytes as a
// blob URL) and ticket, follow that ticket's events live (StreamEvents filtered on it),
// and — on the simulator — push a scan of it with "simulate scan". A new caller token
// removes the code on show (it was minted and followed with the old one) and, when the
// last mint was refused for want of a token or a permission, mints again with the new one.

import { byId, currentAccount, el, errorText, eventItem, qr, simulateScan, timeText, type Info } from "./api.js";
import { follow, stateText, type Follow } from "./follow.js";
import { currentToken, isRefusal, onTokenChange } from "./token.js";

/** The code on show: at most one, so at most one stream of this view is open. */
let current: { stream: Follow; imageUrl: string } | undefined;
/** The last mint was refused by the caller check: a new token retries it. */
let refusedMint = false;

export function initCodes(info: Info): void {
  const form = byId<HTMLFormElement>("mint-form");
  const permanent = byId<HTMLInputElement>("mint-permanent");
  const lifetime = byId<HTMLInputElement>("mint-lifetime");
  permanent.addEventListener("change", () => {
    lifetime.disabled = permanent.checked;
  });
  form.addEventListener("submit", (submit) => {
    submit.preventDefault();
    void mint(info);
  });
  onTokenChange(() => {
    forget();
    byId("mint-status").textContent = "";
    if (refusedMint) void mint(info);
  });
}

/** Stops following the code on show and removes it. */
function forget(): void {
  if (current) {
    current.stream.stop();
    URL.revokeObjectURL(current.imageUrl);
    current = undefined;
  }
  const card = byId("code-card");
  card.replaceChildren();
  card.hidden = true;
}

async function mint(info: Info): Promise<void> {
  const status = byId("mint-status");
  const scene = byId<HTMLInputElement>("mint-scene").value.trim();
  const numeric = byId<HTMLSelectElement>("mint-kind").value === "id";
  const permanent = byId<HTMLInputElement>("mint-permanent").checked;
  const lifetime = Number(byId<HTMLInputElement>("mint-lifetime").value || "0");
  status.textContent = "minting…";
  refusedMint = false;
  const sentWith = currentToken();
  try {
    const code = await qr.createTicket({
      scene: numeric ? { case: "sceneId", value: Number(scene) } : { case: "sceneStr", value: scene },
      permanent,
      expireSeconds: permanent ? 0 : lifetime,
      account: currentAccount(),
    });
    const image = await qr.getImage({ ticket: code.ticket, account: currentAccount() });
    // Minted with a token since replaced: the token change has already asked again.
    if (sentWith !== currentToken()) return;
    const blob = new Blob([image.image as Uint8Array<ArrayBuffer>], { type: image.contentType || "image/jpeg" });
    status.textContent = "";
    show(info, scene, code.ticket, code.url, permanent ? "never" : timeText(code.expireTime), URL.createObjectURL(blob));
  } catch (error) {
    if (sentWith !== currentToken()) return;
    refusedMint = isRefusal(error);
    status.textContent = errorText(error);
  }
}

function show(info: Info, scene: string, ticket: string, url: string, expires: string, imageUrl: string): void {
  forget();
  const events = el("ul", { id: "code-events", class: "events" });
  const streamState = el("span", { id: "code-stream-state", class: "state" }, "connecting…");
  const card = byId("code-card");
  card.replaceChildren(
    el("img", { id: "code-image", src: imageUrl, alt: `QR code of scene ${scene}`, width: "220", height: "220" }),
    el(
      "dl",
      {},
      el("dt", {}, "scene"),
      el("dd", { id: "code-scene" }, scene),
      el("dt", {}, "ticket"),
      el("dd", { id: "code-ticket", class: "mono" }, ticket),
      el("dt", {}, "encodes"),
      el("dd", { class: "mono" }, url),
      el("dt", {}, "expires"),
      el("dd", {}, expires),
    ),
    info.simulator ? simulatePanel(ticket) : "",
    el("h3", {}, "Events of this code ", streamState),
    events,
  );
  card.hidden = false;
  const stream = follow(
    { tickets: [ticket] },
    {
      event: (event, cursor) => events.prepend(eventItem(event, cursor)),
      state: (state) => {
        streamState.textContent = stateText(state);
        streamState.dataset.state = state.kind;
      },
    },
  );
  current = { stream, imageUrl };
}

/** "Simulate scan": the embedded simulator pushes a signed scan of this ticket to the webhook. */
function simulatePanel(ticket: string): HTMLElement {
  const openid = el("input", { id: "simulate-openid", value: `oConsole${Math.random().toString(36).slice(2, 8)}` });
  const newFollower = el("input", { id: "simulate-new-follower", type: "checkbox", checked: "" });
  const result = el("span", { id: "simulate-status", class: "status" });
  const button = el("button", { id: "simulate-button", type: "button" }, "Simulate scan");
  button.addEventListener("click", async () => {
    button.disabled = true;
    result.textContent = "pushing…";
    try {
      await simulateScan(ticket, openid.value, newFollower.checked);
      result.textContent = "pushed; the webhook answered success";
    } catch (error) {
      result.textContent = errorText(error);
    } finally {
      button.disabled = false;
    }
  });
  return el(
    "fieldset",
    { class: "simulate" },
    el("legend", {}, "Simulator"),
    el("label", {}, "OpenID ", openid),
    el("label", {}, newFollower, " follows with this scan (subscribe)"),
    button,
    result,
  );
}
