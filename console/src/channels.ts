// The Channels view: which scene brought which followers. GetSceneStats over the last 24
// hours (hourly) or 30 days (daily) in the browser's time zone, drawn as two stacked bar
// charts (new followers, scans) of the top scenes and a table of totals with the unfollow
// rate. It re-queries when its own StreamEvents sees any event (debounced), and every
// minute so buckets roll over, so the numbers move as scans arrive. A new caller token
// clears what it shows and queries again; a refusal shows the server's message, no numbers.

import { Code } from "@connectrpc/connect";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Bucket, type GetSceneStatsResponse } from "../../clients/typescript/wechat/qr/v1/channel_stats_pb.js";
import { byId, currentAccount, el, errorText, isCode, stats } from "./api.js";
import { colour, drawStackedBars } from "./chart.js";
import { follow, stateText } from "./follow.js";
import { currentToken, onTokenChange } from "./token.js";

/** Scenes drawn in the charts; the table shows up to TABLE_SCENES. */
const CHART_SCENES = 5;
const TABLE_SCENES = 50;
/** Events arriving together cause one query. */
const DEBOUNCE_MS = 150;
const POLL_MS = 60_000;
const HOUR_MS = 3_600_000;

const timeZone = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";

let querying = false;
let again = false;
let timer: ReturnType<typeof setTimeout> | undefined;

export function initChannels(): void {
  byId("channels-zone").textContent = timeZone;
  byId<HTMLSelectElement>("channels-range").addEventListener("change", () => void refresh());
  // Another account: its own statistics.
  byId<HTMLSelectElement>("account").addEventListener("change", () => {
    clear();
    void refresh();
  });
  follow(
    {},
    {
      event: () => {
        clearTimeout(timer);
        timer = setTimeout(() => void refresh(), DEBOUNCE_MS);
      },
      state: (state) => {
        const badge = byId("channels-stream-state");
        badge.textContent = stateText(state);
        badge.dataset.state = state.kind;
      },
    },
  );
  onTokenChange(() => {
    clear();
    byId("channels-status").textContent = "";
    void refresh();
  });
  setInterval(() => void refresh(), POLL_MS);
  void refresh();
}

/** Removes every number shown: they were answered for another token, or not at all. */
function clear(): void {
  byId("chart-new-followers").replaceChildren();
  byId("chart-scans").replaceChildren();
  byId("channels-legend").replaceChildren();
  byId("channels-rows").replaceChildren();
  byId("channels-omitted").textContent = "";
}

/** One query at a time; a refresh asked for meanwhile runs right after. */
async function refresh(): Promise<void> {
  if (querying) {
    again = true;
    return;
  }
  querying = true;
  const status = byId("channels-status");
  const sentWith = currentToken();
  try {
    const daily = byId<HTMLSelectElement>("channels-range").value === "day";
    // The range ends a bucket after now, so the current bucket is whole and its events count.
    const end = new Date(Date.now() + (daily ? 24 : 1) * HOUR_MS);
    const start = new Date(end.getTime() - (daily ? 30 * 24 : 24) * HOUR_MS);
    const answer = await stats.getSceneStats({
      startTime: timestampFromDate(start),
      endTime: timestampFromDate(end),
      bucket: daily ? Bucket.DAY : Bucket.HOUR,
      timeZone,
      maxScenes: TABLE_SCENES,
      account: currentAccount(),
    });
    if (sentWith !== currentToken()) {
      // Answered for the token before: not shown; the query runs again with the new one.
      again = true;
      return;
    }
    draw(answer, daily);
    status.textContent = `updated ${new Date().toLocaleTimeString()}`;
    status.dataset.cursor = answer.cursor;
  } catch (error) {
    if (sentWith !== currentToken()) {
      again = true;
      return;
    }
    clear();
    status.textContent = isCode(error, Code.Unimplemented)
      ? "this server has no channel statistics (ChannelStatsService is not registered)"
      : errorText(error);
  } finally {
    querying = false;
    if (again) {
      again = false;
      void refresh();
    }
  }
}

function draw(answer: GetSceneStatsResponse, daily: boolean): void {
  const format: Intl.DateTimeFormatOptions = daily
    ? { timeZone, month: "short", day: "numeric" }
    : { timeZone, hour: "2-digit", minute: "2-digit" };
  const labels = answer.buckets.map((b) =>
    b.startTime ? timestampDate(b.startTime).toLocaleString(undefined, format) : "",
  );
  const top = answer.scenes.slice(0, CHART_SCENES);
  const series = (pick: "newFollowers" | "scans") =>
    top.map((s) => ({ scene: s.scene, values: s.buckets.map((c) => Number(c[pick])) }));
  drawStackedBars(byId<SVGSVGElement>("chart-new-followers"), labels, series("newFollowers"));
  drawStackedBars(byId<SVGSVGElement>("chart-scans"), labels, series("scans"));
  byId("channels-legend").replaceChildren(
    ...top.map((s, i) => {
      const swatch = el("i");
      // Through the CSSOM: the page's CSP allows no inline style attributes.
      swatch.style.background = colour(i);
      return el("span", { class: "key" }, swatch, s.scene);
    }),
  );

  const rows = answer.scenes.map((s) => {
    const t = s.totals;
    const followers = Number(t?.newFollowers ?? 0n);
    const unfollows = Number(t?.unfollows ?? 0n);
    const rate = followers > 0 ? `${((100 * unfollows) / followers).toFixed(1)} %` : "—";
    return el(
      "tr",
      { "data-scene": s.scene },
      el("td", {}, s.scene),
      el("td", { "data-col": "new_followers" }, followers),
      el("td", { "data-col": "scans" }, Number(t?.scans ?? 0n)),
      el("td", { "data-col": "unique_users" }, Number(t?.uniqueUsers ?? 0n)),
      el("td", { "data-col": "unfollows" }, unfollows),
      el("td", { "data-col": "unfollow_rate" }, rate),
    );
  });
  if (rows.length === 0) {
    rows.push(el("tr", {}, el("td", { colspan: "6", class: "empty" }, "No scene activity in this range yet.")));
  }
  byId("channels-rows").replaceChildren(...rows);
  byId("channels-omitted").textContent =
    answer.omittedScenes > 0 ? `and ${answer.omittedScenes} more scenes with less activity` : "";
}
