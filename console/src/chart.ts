// A stacked bar chart in plain SVG: one bar per time bucket, one colour per scene. Small
// on purpose (no chart library); each bar segment carries data-scene and data-value so
// tests and readers can check what is drawn.

export interface Series {
  scene: string;
  values: number[];
}

const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 720;
const HEIGHT = 200;
const MARGIN = { top: 10, right: 10, bottom: 24, left: 36 };

/** The colour of the i-th scene, in the chart and in the legend. */
export function colour(i: number): string {
  return ["#2f7ed8", "#e4572e", "#17a398", "#f3a712", "#8e44ad", "#7f8c8d"][i % 6];
}

function svg<K extends keyof SVGElementTagNameMap>(tag: K, attrs: Record<string, string | number>): SVGElementTagNameMap[K] {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  return node;
}

/** Draws `series` stacked over `labels` (one per bucket) into `target`, replacing what was there. */
export function drawStackedBars(target: SVGSVGElement, labels: string[], series: Series[]): void {
  target.setAttribute("viewBox", `0 0 ${WIDTH} ${HEIGHT}`);
  target.replaceChildren();
  const plotWidth = WIDTH - MARGIN.left - MARGIN.right;
  const plotHeight = HEIGHT - MARGIN.top - MARGIN.bottom;
  const totals = labels.map((_, b) => series.reduce((sum, s) => sum + (s.values[b] ?? 0), 0));
  const top = niceCeiling(Math.max(1, ...totals));
  const y = (v: number) => MARGIN.top + plotHeight - (v / top) * plotHeight;
  const slot = plotWidth / Math.max(1, labels.length);
  const barWidth = Math.max(1, slot * 0.7);

  for (const tick of [0, top / 2, top]) {
    target.append(svg("line", { x1: MARGIN.left, x2: WIDTH - MARGIN.right, y1: y(tick), y2: y(tick), class: "grid" }));
    const text = svg("text", { x: MARGIN.left - 6, y: y(tick) + 4, "text-anchor": "end", class: "axis" });
    text.textContent = String(tick);
    target.append(text);
  }
  const labelEvery = Math.ceil(labels.length / 8);
  labels.forEach((label, b) => {
    const x = MARGIN.left + b * slot + (slot - barWidth) / 2;
    let base = 0;
    series.forEach((s, i) => {
      const value = s.values[b] ?? 0;
      if (value === 0) return;
      const rect = svg("rect", {
        x,
        y: y(base + value),
        width: barWidth,
        height: y(base) - y(base + value),
        fill: colour(i),
        "data-scene": s.scene,
        "data-value": value,
      });
      const title = svg("title", {});
      title.textContent = `${s.scene} · ${label}: ${value}`;
      rect.append(title);
      target.append(rect);
      base += value;
    });
    if (b % labelEvery === 0) {
      const text = svg("text", { x: x + barWidth / 2, y: HEIGHT - 6, "text-anchor": "middle", class: "axis" });
      text.textContent = label;
      target.append(text);
    }
  });
}

/** 1, 2, 5, 10, 20, 50, …: the smallest at or above `v`, an even number when above 1. */
function niceCeiling(v: number): number {
  const power = 10 ** Math.floor(Math.log10(v));
  for (const step of [1, 2, 5, 10]) if (step * power >= v) return Math.max(2, step * power);
  return 10 * power;
}
