//! The report as a page a browser opens from `reports/`, like the dashboards of Gatling or
//! k6: per second, answers by status, latency percentiles, accepted, settled and sold
//! against the stock, the backlog and settle lag, and CPU per process, with the moments of
//! sell-out and of everything settled marked on each chart.
//!
//! One self-contained file: the report's JSON is embedded and a small script draws SVG
//! charts from it, so the page needs no network and no server.

use crate::report::model::Report;

/// The page for `report`.
pub fn render(report: &Report) -> String {
    let data = script_safe(&serde_json::to_string(report).expect("a report serialises"));
    let title = html_escape(&format!("{} — {}", report.scenario, report.started_at));
    TEMPLATE.replace("{{title}}", &title).replace("{{data}}", &data)
}

/// JSON that can sit in a `<script>` element: a `</` in a string would end the element early.
fn script_safe(json: &str) -> String {
    json.replace("</", "<\\/")
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

const TEMPLATE: &str = r##"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{title}}</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem auto; max-width: 1100px; color: #1d2433; }
  h1 { font-size: 1.3rem; margin: 0 0 .3rem; }
  .meta { color: #5b6478; margin-bottom: 1rem; }
  .verdict { font-weight: 600; }
  .pass { color: #17803d; } .fail { color: #c62828; }
  .figures { display: grid; grid-template-columns: repeat(auto-fill, minmax(170px, 1fr)); gap: .5rem; margin: 1rem 0; }
  .figure { border: 1px solid #d8dde8; border-radius: 6px; padding: .5rem .7rem; }
  .figure b { display: block; font-size: 1.2rem; }
  section.chart { border: 1px solid #d8dde8; border-radius: 6px; padding: .6rem .8rem; margin: 1rem 0; }
  section.chart h2 { font-size: 1rem; margin: 0 0 .3rem; }
  section.chart .empty { color: #5b6478; }
  svg { width: 100%; height: auto; display: block; }
  svg text { font-size: 11px; fill: #5b6478; }
  .axis { stroke: #9aa3b5; } .grid { stroke: #eef0f5; }
  polyline { fill: none; stroke-width: 2; }
  line.mark { stroke-dasharray: 5 4; stroke-width: 1.5; }
  line.sold-out { stroke: #c62828; } line.settled { stroke: #17803d; }
  ul.legend { list-style: none; padding: 0; margin: .3rem 0 0; display: flex; flex-wrap: wrap; gap: .9rem; }
  ul.legend li::before { content: ""; display: inline-block; width: 14px; height: 3px; margin-right: 5px;
    vertical-align: middle; background: var(--c); }
  table { border-collapse: collapse; width: 100%; }
  td, th { text-align: left; padding: .25rem .5rem; border-bottom: 1px solid #eef0f5; }
</style>
</head>
<body>
<h1 id="title"></h1>
<div class="meta" id="meta"></div>
<div class="figures" id="figures"></div>
<section class="chart" id="answers"><h2>Answers per second, by status</h2></section>
<section class="chart" id="latency"><h2>Latency per second of sending (ms): p50, p99, max</h2></section>
<section class="chart" id="flow"><h2>Accepted, settled and sold so far, against the stock</h2></section>
<section class="chart" id="backlog"><h2>Backlog (accepted, not yet final)</h2></section>
<section class="chart" id="lag"><h2>Settle lag, 202 to commit (ms), of the orders settled in each second</h2></section>
<section class="chart" id="cpu"><h2>CPU per process (% of one core)</h2></section>
<section id="verdicts"><h2>Consistency checks</h2><table><tbody></tbody></table></section>
<script id="report" type="application/json">{{data}}</script>
<script>
"use strict";
const report = JSON.parse(document.getElementById("report").textContent);
const main = report.phases[report.phases.length - 1] || { timeline: [], answers: [], processes: [] };
const flow = report.flow;
const palette = ["#1f6feb", "#d9480f", "#2f9e44", "#ae3ec9", "#f59f00", "#0c8599", "#495057", "#e64980"];
const statusColor = { "202": "#2f9e44", "200": "#2f9e44", "201": "#2f9e44", "409": "#f59f00",
  "429": "#ae3ec9", "503": "#c62828", "error": "#495057", "timeout": "#e64980" };
const marks = [];
if (flow && flow.soldOutAtS != null) marks.push({ at: flow.soldOutAtS, cls: "sold-out", label: "sold out" });
if (flow && flow.settledAtS != null) marks.push({ at: flow.settledAtS, cls: "settled", label: "all settled" });
const fmt = (n) => n == null ? "—" : Number(n).toLocaleString("en-US", { maximumFractionDigits: 1 });

const title = document.getElementById("title");
title.textContent = report.scenario + " · ";
const verdict = document.createElement("span");
verdict.className = "verdict " + (report.passed ? "pass" : "fail");
verdict.textContent = report.passed ? "every check passed" : "a check failed";
title.appendChild(verdict);
document.getElementById("meta").textContent =
  "started " + report.startedAt + " against " + report.baseUrl;

const figures = [
  ["requests", main.requests],
  ["answered / s", main.answeredPerS],
  ["p50 ms", main.latency && main.latency.p50Ms],
  ["p99 ms", main.latency && main.latency.p99Ms],
];
if (report.ratio) figures.push(["÷ no-op (throughput)", report.ratio.throughput]);
if (flow) figures.push(["stock", flow.stock], ["sold out at s", flow.soldOutAtS], ["all settled at s", flow.settledAtS]);
for (const [label, value] of figures) {
  const d = document.createElement("div");
  d.className = "figure";
  d.dataset.figure = label;
  const b = document.createElement("b");
  b.textContent = fmt(value);
  d.append(b, label);
  document.getElementById("figures").appendChild(d);
}

const NS = "http://www.w3.org/2000/svg";
function el(name, attrs, parent) {
  const e = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (parent) parent.appendChild(e);
  return e;
}

// Draws series [{name, color, points: [[x, y], …]}] into the section `id`, with the marks
// and, when `flat` is given, a dashed horizontal line at that y (the stock).
function chart(id, series, flat) {
  const section = document.getElementById(id);
  series = series.filter((s) => s.points.length > 0);
  if (series.length === 0) {
    const p = document.createElement("p");
    p.className = "empty";
    p.textContent = "nothing measured for this chart in this run";
    section.appendChild(p);
    return;
  }
  const W = 1000, H = 260, L = 60, R = 15, T = 10, B = 30;
  const xs = series.flatMap((s) => s.points.map((p) => p[0])).concat(marks.map((m) => m.at));
  const ys = series.flatMap((s) => s.points.map((p) => p[1])).concat(flat ? [flat.y] : []);
  const xMax = Math.max(1, ...xs), yMax = Math.max(1, ...ys) * 1.1;
  const x = (v) => L + (v / xMax) * (W - L - R), y = (v) => H - B - (v / yMax) * (H - T - B);
  const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, role: "img" }, section);
  for (let i = 0; i <= 4; i++) {
    const v = (yMax / 4) * i;
    el("line", { class: "grid", x1: L, x2: W - R, y1: y(v), y2: y(v) }, svg);
    el("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end" }, svg).textContent = fmt(v);
  }
  const step = Math.max(1, Math.ceil(xMax / 10));
  for (let v = 0; v <= xMax; v += step) {
    el("text", { x: x(v), y: H - B + 16, "text-anchor": "middle" }, svg).textContent = v + " s";
  }
  el("line", { class: "axis", x1: L, x2: W - R, y1: H - B, y2: H - B }, svg);
  el("line", { class: "axis", x1: L, x2: L, y1: T, y2: H - B }, svg);
  if (flat) {
    el("line", { class: "mark stock", x1: L, x2: W - R, y1: y(flat.y), y2: y(flat.y), stroke: "#868e96" }, svg);
    el("text", { x: W - R - 4, y: y(flat.y) - 4, "text-anchor": "end" }, svg).textContent = flat.label;
  }
  for (const m of marks) {
    el("line", { class: "mark " + m.cls, x1: x(m.at), x2: x(m.at), y1: T, y2: H - B }, svg);
    el("text", { x: x(m.at) + 4, y: T + 12 }, svg).textContent = m.label + " " + fmt(m.at) + " s";
  }
  const legend = document.createElement("ul");
  legend.className = "legend";
  series.forEach((s, i) => {
    const color = s.color || palette[i % palette.length];
    el("polyline", {
      "data-series": s.name, stroke: color,
      points: s.points.map((p) => x(p[0]).toFixed(1) + "," + y(p[1]).toFixed(1)).join(" "),
    }, svg);
    const li = document.createElement("li");
    li.style.setProperty("--c", color);
    li.textContent = s.name;
    legend.appendChild(li);
  });
  section.appendChild(legend);
}

const statuses = [...new Set(main.answers.flatMap((a) => Object.keys(a)))].sort();
chart("answers", statuses.map((st) => ({
  name: st, color: statusColor[st],
  points: main.answers.map((a, s) => [s + 0.5, a[st] || 0]),
})));
chart("latency", [["p50", "p50Ms"], ["p99", "p99Ms"], ["max", "maxMs"]].map(([name, key]) => ({
  name, points: main.timeline.map((t) => [t.second + 0.5, t[key]]),
})));
const seconds = flow ? flow.seconds : [];
const end = (p) => p.second + 1;
chart("flow", [
  { name: "accepted", points: seconds.map((p) => [end(p), p.acceptedTotal]) },
  { name: "settled", points: seconds.map((p) => [end(p), p.settledTotal]) },
  { name: "sold", points: seconds.map((p) => [end(p), p.soldTotal]) },
], flow ? { y: flow.stock, label: "stock " + fmt(flow.stock) } : null);
chart("backlog", [{ name: "backlog", points: seconds.map((p) => [end(p), p.backlog]) }]);
chart("lag", [["p99", "settleLagP99Ms"], ["max", "settleLagMaxMs"]].map(([name, key]) => ({
  name, points: seconds.filter((p) => p[key] != null).map((p) => [p.second + 0.5, p[key]]),
})));
chart("cpu", (main.processes || []).map((u) => ({
  name: u.name, points: (u.timeline || []).map((c) => [c.atS, c.cpuPct]),
})));

const rows = document.querySelector("#verdicts tbody");
for (const v of report.verdicts) {
  const tr = document.createElement("tr");
  tr.dataset.check = v.check + "-" + v.source;
  for (const [text, cls] of [[v.ok ? "pass" : "FAIL", v.ok ? "pass" : "fail"], [v.check, ""], [v.source, ""], [v.detail, ""]]) {
    const td = document.createElement("td");
    td.textContent = text == null ? "" : String(text);
    if (cls) td.className = cls;
    tr.appendChild(td);
  }
  rows.appendChild(tr);
}
document.body.dataset.drawn = "true";
</script>
</body>
</html>
"##;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_json_cannot_close_its_script_element() {
        let data = script_safe(r#"{"notes":["</script><script>alert(1)</script>"]}"#);
        assert!(!data.contains("</script"));
        let back: serde_json::Value = serde_json::from_str(&data).unwrap();
        assert_eq!(back["notes"][0], "</script><script>alert(1)</script>");
    }
}
