// The web console with `[[clients]]` configured, in real headless Chromium (Debian's,
// driven by playwright-core), against the real binary: the page asks for a caller token
// up front; a mint without one is refused; a wrong token keeps it asking; the full
// client's token retries the mint, shows the code and, after a scan the Rust side pushes
// to the webhook, its live event; "Forget token" clears the views; the limited client's
// token shows PERMISSION_DENIED naming the permission, and no data. tests/console_auth.rs
// starts the binary and runs this with:
//   CONSOLE_URL    the console's URL (http://127.0.0.1:<admin port>/console/)
//   OUT_DIR        where screenshots and the browser profile go
//   CHROMIUM       the browser (default /usr/bin/chromium)
//   FULL_TOKEN     a client allowed every method
//   LIMITED_TOKEN  a client allowed only GetImage
// When the code is on show it prints `ticket=<ticket> scene=<scene>` and waits for a line
// on stdin saying the scan was pushed. Exits non-zero, saying why, on the first failure.

import { join } from "node:path";
import { createInterface } from "node:readline";
import { fail, launch, step } from "./browser.mjs";

const { CONSOLE_URL: url, OUT_DIR: out, FULL_TOKEN: full, LIMITED_TOKEN: limited } = process.env;
if (!url || !out || !full || !limited) throw new Error("CONSOLE_URL, OUT_DIR, FULL_TOKEN and LIMITED_TOKEN are required");
const stdin = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const openid = "oConsoleAuth";

const { context, page, problems } = await launch(out);

try {
  step(`open ${url}: it asks for a token up front`);
  await page.goto(url);
  await page.waitForSelector("body[data-ready=true]", { timeout: 15_000 });
  const mode = await page.textContent("#mode");
  if (!mode.includes("callers need a token")) fail(`#mode says "${mode}"`);
  await page.waitForSelector("#token-panel:not([hidden])", { timeout: 5_000 });
  if ((await page.getAttribute("#token-input", "type")) !== "password") fail("the token field is not a password field");
  await page.screenshot({ path: join(out, "token-prompt.png"), fullPage: true });

  const scene = `auth-e2e-${Date.now().toString(36)}`;
  step("Codes: a mint without a token is refused (UNAUTHENTICATED)");
  await page.fill("#mint-scene", scene);
  await page.fill("#mint-lifetime", "600");
  await page.click("#mint-button");
  await waitText("#mint-status", "Unauthenticated");
  await page.waitForSelector("#live-state[data-state=refused]", { state: "attached", timeout: 10_000 });

  step("a wrong token keeps it asking");
  await page.fill("#token-input", "guessed-token");
  await page.click("#token-submit");
  await waitText("#token-message", "unknown token");
  await page.waitForSelector("#token-panel:not([hidden])", { timeout: 1_000 });
  await waitText("#mint-status", "unknown token");

  step("the full client's token: the refused mint runs again, the code and its stream are live");
  await page.fill("#token-input", full);
  await page.click("#token-submit");
  await page.waitForSelector("#code-ticket", { timeout: 10_000 });
  await page.waitForSelector("#token-panel", { state: "hidden", timeout: 1_000 });
  const ticket = (await page.textContent("#code-ticket")).trim();
  if ((await page.textContent("#code-scene")).trim() !== scene) fail("the code shown is not the scene asked for");
  await page.waitForFunction(() => document.querySelector("#code-image")?.naturalWidth > 0, null, { timeout: 10_000 });
  await page.waitForSelector("#code-stream-state[data-state=live]", { timeout: 10_000 });
  await page.waitForSelector("#live-state[data-state=live]", { state: "attached", timeout: 10_000 });
  await waitText("#channels-status", "updated");
  await checkStorage(full);

  step("a scan pushed to the webhook shows in the code's live panel");
  console.log(`ticket=${ticket} scene=${scene}`);
  const pushed = await stdin.next();
  if (pushed.done || pushed.value.trim() !== "pushed") fail(`expected "pushed" on stdin, got ${pushed.value}`);
  await page.waitForSelector(`#code-events li[data-type=SCAN]`, { timeout: 5_000 });
  const shown = await page.textContent("#code-events li");
  if (!shown.includes(openid)) fail(`the event shown is not the pushed scan: ${shown}`);
  await page.screenshot({ path: join(out, "codes-with-token.png"), fullPage: true });

  step("forget token: the code is gone, the token too, and it asks again");
  await page.click("#token-forget");
  await page.waitForSelector("#code-card", { state: "hidden", timeout: 1_000 });
  await page.waitForSelector("#token-panel:not([hidden])", { timeout: 5_000 });
  await checkStorage(null);

  step("the limited client's token: PERMISSION_DENIED naming the permission, no data");
  await page.fill("#token-input", limited);
  await page.click("#token-submit");
  await page.waitForSelector("#token-panel[data-reason=denied]:not([hidden])", { timeout: 10_000 });
  await waitText("#token-message", "lacks the permission: method");
  await waitText("#live-state", "lacks the permission: method StreamEvents");
  await page.fill("#mint-scene", `${scene}-denied`);
  await page.click("#mint-button");
  await waitText("#mint-status", "lacks the permission: method CreateTicket");
  if (await page.isVisible("#code-card")) fail("a code is shown to a client that may not mint");
  await page.goto(`${url}#channels`);
  await waitText("#channels-status", "lacks the permission: method GetSceneStats");
  const rows = await page.$$eval("#channels-rows tr", (rows) => rows.length);
  if (rows !== 0) fail(`the Channels table shows ${rows} rows to a client that may not read statistics`);
  await page.screenshot({ path: join(out, "permission-denied.png"), fullPage: true });
  await checkStorage(limited);

  if (problems.length) fail(problems.join("\n"));
  console.log(`console auth test passed; screenshots in ${out}`);
} catch (error) {
  await page.screenshot({ path: join(out, "failure.png"), fullPage: true }).catch(() => {});
  console.error(`console auth test FAILED: ${error.message}`);
  if (problems.length) console.error(problems.join("\n"));
  process.exitCode = 1;
} finally {
  await context.close();
  process.stdin.destroy();
}

/** Waits until the text of `selector` contains `text`. */
async function waitText(selector, text) {
  try {
    await page.waitForFunction(
      ({ selector, text }) => document.querySelector(selector)?.textContent.includes(text),
      { selector, text },
      { timeout: 10_000 },
    );
  } catch {
    fail(`${selector} never said "${text}"; it says "${await page.textContent(selector)}"`);
  }
}

/** The token is in this tab's sessionStorage (or nowhere), never in localStorage or the URL. */
async function checkStorage(expected) {
  const seen = await page.evaluate(() => ({
    session: Object.values(sessionStorage),
    local: localStorage.length,
    href: location.href,
  }));
  const wanted = expected === null ? [] : [expected];
  if (JSON.stringify(seen.session) !== JSON.stringify(wanted)) fail(`sessionStorage holds ${seen.session}`);
  if (seen.local !== 0) fail("localStorage is not empty");
  if ((expected && seen.href.includes(expected)) || seen.href.includes("token")) fail(`the URL carries the token: ${seen.href}`);
}
