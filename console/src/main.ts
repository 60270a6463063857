// The console's entry point: asks the server what it offers (info.json), sets up the token
// prompt, starts the three views, and switches between them by the URL's #fragment
// (#codes, #channels, #live).

import { byId, errorText, fetchInfo } from "./api.js";
import { initChannels } from "./channels.js";
import { initCodes } from "./codes.js";
import { initLive } from "./live.js";
import { initPrompt } from "./prompt.js";

const VIEWS = ["codes", "channels", "live"] as const;

function showView(): void {
  const wanted = location.hash.slice(1);
  const view = (VIEWS as readonly string[]).includes(wanted) ? wanted : "codes";
  for (const name of VIEWS) {
    byId(`view-${name}`).hidden = name !== view;
    byId(`tab-${name}`).classList.toggle("active", name === view);
  }
}

async function main(): Promise<void> {
  window.addEventListener("hashchange", showView);
  showView();
  try {
    const info = await fetchInfo();
    byId("mode").textContent =
      (info.simulator ? "on the embedded WeChat simulator" : "on WeChat") +
      (info.auth_required ? ", callers need a token" : "");
    if (info.accounts.length > 1) {
      const picker = byId<HTMLSelectElement>("account");
      for (const appId of info.accounts) {
        const option = document.createElement("option");
        option.value = appId;
        option.textContent = appId;
        picker.append(option);
      }
      byId("account-picker").hidden = false;
    }
    initPrompt(info.auth_required);
    initCodes(info);
    initChannels();
    initLive();
    document.body.dataset.ready = "true";
  } catch (error) {
    byId("mode").textContent = `cannot reach the service: ${errorText(error)}`;
  }
}

void main();
