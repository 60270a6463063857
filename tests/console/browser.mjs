// What both browser tests share: headless Debian Chromium through playwright-core (no
// browser download), a profile of its own under OUT_DIR, and every page or console error
// collected so a test can fail on it; plus the step / fail reporting.

import { mkdtempSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";

export const step = (what) => console.log(`- ${what}`);
export const fail = (why) => {
  throw new Error(why);
};

/** Starts the browser with a fresh profile in `out`: its context, page and problems. */
export async function launch(out) {
  const context = await chromium.launchPersistentContext(mkdtempSync(join(out, "profile-")), {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-proxy-server",
    ],
    viewport: { width: 1100, height: 900 },
  });
  const page = context.pages()[0] ?? (await context.newPage());
  const problems = [];
  page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
  page.on("console", (message) => {
    if (message.type() === "error") problems.push(`console error: ${message.text()}`);
  });
  return { context, page, problems };
}
