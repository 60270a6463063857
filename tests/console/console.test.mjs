// The web console in real headless Chromium (Debian's, driven by playwright-core; no
// browser download), against a running service: open the console, mint a code, simulate
// a scan, see the event in the Codes view and the new follower in the Channels chart and
// table within a second, then the Live view's filters and its resume after a dropped
// connection. Saves a screenshot of each view. tests/console.rs starts the service and
// runs this with:
//   CONSOLE_URL  the console's URL (http://127.0.0.1:<admin port>/console/)
//   OUT_DIR      where screenshots and the browser profile go
//   CHROMIUM     the browser (default /usr/bin/chromium)
//   ACCOUNT      optional: the AppID to pick in the header (a service with several accounts)
// Exits non-zero, saying why, on the first failed expectation.

import { join } from "node:path";
import { fail, launch, step } from "./browser.mjs";

const url = process.env.CONSOLE_URL;
const out = process.env.OUT_DIR;
if (!url || !out) throw new Error("CONSOLE_URL and OUT_DIR are required");
/** What "within a second" allows, from the click on "Simulate scan". */
const WITHIN_MS = 1000;

const { context, page, problems } = await launch(out);

try {
  step(`open ${url}`);
  await page.goto(url);
  await page.waitForSelector("body[data-ready=true]", { timeout: 15_000 });
  const mode = await page.textContent("#mode");
  if (!mode.includes("simulator")) fail(`#mode says "${mode}", expected the simulator`);
  const account = process.env.ACCOUNT;
  if (account) {
    step(`pick the account ${account}`);
    if (await page.isHidden("#account-picker")) fail("no account picker with several accounts");
    await page.selectOption("#account", account);
  } else if (!(await page.isHidden("#account-picker"))) {
    fail("an account picker with one account");
  }

  const scene = `console-e2e-${Date.now().toString(36)}`;
  step(`Codes: mint a temporary code for scene ${scene}`);
  await page.fill("#mint-scene", scene);
  await page.fill("#mint-lifetime", "600");
  await page.click("#mint-button");
  await page.waitForSelector("#code-ticket", { timeout: 10_000 });
  const ticket = (await page.textContent("#code-ticket")).trim();
  if (!ticket) fail("no ticket shown");
  await page.waitForFunction(() => document.querySelector("#code-image")?.naturalWidth > 0, null, { timeout: 10_000 });
  await page.waitForSelector("#code-stream-state[data-state=live]", { timeout: 10_000 });

  step("Channels: the scene is not there yet");
  await page.goto(`${url}#channels`);
  await page.waitForFunction(() => document.querySelector("#channels-status")?.textContent.startsWith("updated"), null, {
    timeout: 10_000,
  });
  await page.waitForSelector("#channels-stream-state[data-state=live]", { timeout: 10_000 });
  const before = await chartSum(scene);
  if (before !== 0) fail(`the chart shows ${before} new followers for a scene nobody scanned`);

  step("Codes: simulate a scan by a new follower");
  await page.goto(`${url}#codes`);
  const clicked = Date.now();
  await page.click("#simulate-button");
  await page.waitForSelector("#code-events li[data-type=subscribe]", { timeout: WITHIN_MS });
  const eventMs = Date.now() - clicked;
  const shown = await page.textContent("#code-events li");
  if (!shown.includes(scene)) fail(`the event shown does not name the scene: ${shown}`);
  await page.screenshot({ path: join(out, "codes.png"), fullPage: true });

  step("Channels: the new follower is counted");
  await page.goto(`${url}#channels`);
  const row = `#channels-rows tr[data-scene="${scene}"] td[data-col=new_followers]`;
  await page.waitForFunction(
    ({ row, scene }) =>
      document.querySelector(row)?.textContent === "1" &&
      [...document.querySelectorAll(`#chart-new-followers rect[data-scene="${scene}"]`)].reduce(
        (sum, rect) => sum + Number(rect.dataset.value),
        0,
      ) === 1,
    { row, scene },
    { timeout: Math.max(1, WITHIN_MS - (Date.now() - clicked)) },
  );
  const chartMs = Date.now() - clicked;
  console.log(`  event in the Codes view ${eventMs} ms after the click, in the Channels chart after ${chartMs} ms`);
  await page.screenshot({ path: join(out, "channels.png"), fullPage: true });

  step("Live: filter on the scene, see a SCAN");
  await page.goto(`${url}#live`);
  await page.fill("#live-scenes", scene);
  await page.click("#live-form button[type=submit]");
  await page.waitForSelector("#live-state[data-state=live]", { timeout: 10_000 });
  await simulate(ticket, "oConsoleLive", false);
  await page.waitForSelector("#live-events li[data-type=SCAN]", { timeout: 5_000 });

  step("Live: drop the connection; a scan pushed meanwhile arrives after the resume, once");
  await page.click("#live-drop");
  await page.waitForSelector("#live-state[data-state=reconnecting]", { timeout: 5_000 });
  // Another user: WeChat's de-duplication takes the same user in the same second for a retry.
  await simulate(ticket, "oConsoleLive2", false);
  await page.waitForFunction(() => document.querySelectorAll("#live-events li").length === 2, null, {
    timeout: 15_000,
  });
  await page.waitForSelector("#live-state[data-state=live]", { timeout: 10_000 });
  const cursors = await page.$$eval("#live-events li", (items) => items.map((li) => li.dataset.cursor));
  if (new Set(cursors).size !== 2) fail(`expected two distinct events, got cursors ${cursors}`);
  await page.screenshot({ path: join(out, "live.png"), fullPage: true });

  if (problems.length) fail(problems.join("\n"));
  console.log(`console test passed; screenshots in ${out}`);
} catch (error) {
  await page.screenshot({ path: join(out, "failure.png"), fullPage: true }).catch(() => {});
  console.error(`console test FAILED: ${error.message}`);
  if (problems.length) console.error(problems.join("\n"));
  process.exitCode = 1;
} finally {
  await context.close();
}

/** New followers the Channels chart draws for `scene`, over every bucket. */
async function chartSum(scene) {
  return page.$$eval(`#chart-new-followers rect[data-scene="${scene}"]`, (rects) =>
    rects.reduce((sum, rect) => sum + Number(rect.dataset.value), 0),
  );
}

/** The console's own simulate-scan endpoint, called from the page (same origin). */
async function simulate(ticket, openid, newFollower) {
  const status = await page.evaluate(
    async ([ticket, openid, newFollower]) => {
      const response = await fetch("simulate-scan", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ ticket, openid, new_follower: newFollower }),
      });
      return response.status;
    },
    [ticket, openid, newFollower],
  );
  if (status !== 200) fail(`simulate-scan answered ${status}`);
}
