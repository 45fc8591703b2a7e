// The live page: one EventSource for the server's snapshots, and forms that
// call the same HTTP API as any client.
"use strict";

const $ = (id) => document.getElementById(id);
// Every call sends the token: an administrator's JWT places and cancels
// any customer's orders; the operators' admin token sets stock and replays
// dead letters only.
const tokenKey = "orderstream-token";
$("token").value = sessionStorage.getItem(tokenKey) || "";
$("token").addEventListener("change", () => sessionStorage.setItem(tokenKey, $("token").value));
$("token-form").addEventListener("submit", (ev) => ev.preventDefault());

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

// The rows each table shows, as JSON: a snapshot that changes nothing in a
// table leaves its rows in place, so that a click on one of its buttons
// is not lost to a redraw.
const shown = new Map();

function rows(tbody, items, build) {
  const json = JSON.stringify(items);
  if (shown.get(tbody) === json) return;
  shown.set(tbody, json);
  tbody.replaceChildren(...items.map((item) => {
    const tr = document.createElement("tr");
    tr.append(...build(item));
    return tr;
  }));
}

function age(seconds) {
  if (!seconds) return "–";
  return seconds < 1 ? `${Math.round(seconds * 1000)} ms` : `${seconds.toFixed(1)} s`;
}

// An order can be cancelled while it is pending or confirmed.
const cancellable = new Set(["pending", "confirmed"]);
const cancelledStatuses = new Set(["cancelling", "cancelled"]);

// The charts: the last 15 minutes, read from GET /history when the page
// opens, then the newest point of each snapshot.
const historySpan = 15 * 60 * 1000;
const palette = ["#1f6feb", "#1a7f37", "#b42318", "#9a6700", "#8250df", "#0a7ea4", "#bf3989", "#57606a"];
let points = [];
let historyRead = false;

const groupKey = (g) => `${g.stream}/${g.group}`;
function groupKeys() {
  const keys = new Set();
  for (const p of points) for (const g of p.groups || []) keys.add(groupKey(g));
  return [...keys].sort();
}
// A group is named by itself, or with its stream when another stream has
// a group of that name.
function groupLabel(key) {
  const name = key.slice(key.indexOf("/") + 1);
  return groupKeys().filter((k) => k.endsWith(`/${name}`)).length > 1 ? key : name;
}
function groupValue(p, key, field) {
  const g = (p.groups || []).find((g) => groupKey(g) === key);
  return g ? g[field] : null;
}

// Each chart's series: a label and how to read it from a point.
const charts = [
  { id: "chart-orders", series: () => [
    ["placed", (p) => p.placed_per_s], ["settled", (p) => p.settled_per_s]] },
  { id: "chart-latency", series: () => [
    ["p50", (p) => p.settle_p50_ms ?? null], ["p99", (p) => p.settle_p99_ms ?? null]] },
  { id: "chart-backlog", series: () => [["outbox", (p) => p.outbox_pending],
    ...groupKeys().flatMap((k) => [[`${groupLabel(k)} lag`, (p) => groupValue(p, k, "lag")],
      [`${groupLabel(k)} pending`, (p) => groupValue(p, k, "pending")]])] },
  { id: "chart-trouble", series: () => [["dead letters", (p) => p.dead_letters], ["parked", (p) => p.parked]] },
];
const plots = new Map(); // chart id -> { plot, labels }
const chartHeight = 160;

function drawCharts() {
  const xs = points.map((p) => Date.parse(p.at) / 1000);
  for (const chart of charts) {
    const el = $(chart.id);
    const series = chart.series();
    const data = [xs, ...series.map(([, value]) => points.map(value))];
    el.dataset.points = points.length;
    el.dataset.nonzero = data.slice(1).flat().filter((v) => v > 0).length;
    const labels = series.map(([label]) => label).join("\n");
    const shown = plots.get(chart.id);
    if (shown && shown.labels === labels) {
      shown.plot.setData(data);
      continue;
    }
    // A new consumer group is a new series: the chart is made again.
    if (shown) shown.plot.destroy();
    const opts = {
      width: Math.max(200, el.clientWidth), height: chartHeight,
      scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(1, max * 1.1)] } },
      series: [{}, ...series.map(([label], i) => ({ label, stroke: palette[i % palette.length], width: 1.5 }))],
      axes: [{}, { size: 48 }],
      legend: { live: false },
    };
    plots.set(chart.id, { plot: new uPlot(opts, data, el), labels });
  }
}

function addPoint(p) {
  if (!p || !p.at) return;
  points.push(p);
  const cut = Date.parse(p.at) - historySpan;
  while (points.length && Date.parse(points[0].at) < cut) points.shift();
  if (historyRead) drawCharts();
}

async function readHistory() {
  try {
    const resp = await fetch("/history");
    const past = resp.ok ? await resp.json() : [];
    // Points that came by the event stream meanwhile are newer.
    const last = past.length ? Date.parse(past[past.length - 1].at) : 0;
    points = [...past, ...points.filter((p) => Date.parse(p.at) > last)];
  } finally {
    historyRead = true;
    drawCharts();
  }
}

new ResizeObserver(() => {
  for (const chart of charts) {
    const shown = plots.get(chart.id);
    if (shown) shown.plot.setSize({ width: Math.max(200, $(chart.id).clientWidth), height: chartHeight });
  }
}).observe($("chart-orders").parentElement);

function render(s) {
  addPoint(s.point);
  rows($("orders"), s.orders || [], (o) => {
    const id = cell("", "id");
    const open = document.createElement("button");
    open.type = "button";
    open.className = "link";
    open.textContent = o.id.slice(0, 8) + "…";
    open.setAttribute("aria-label", `The story of order ${o.id}`);
    open.addEventListener("click", () => showStory(o.id));
    id.append(open);
    const tr = [id, cell(o.customer_id, "narrow-hide")];
    const status = cell(o.reason ? `${o.status} (${o.reason})` : o.status, `status ${o.status}`);
    status.dataset.orderId = o.id;
    // A cancelled order's time is to its cancellation, not its settlement.
    const took = cancelledStatuses.has(o.status) ? "–" : o.settle_ms == null ? "…" : `${o.settle_ms.toFixed(1)} ms`;
    const action = cell("");
    if (cancellable.has(o.status)) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "cancel";
      button.textContent = "Cancel";
      button.setAttribute("aria-label", `Cancel order ${o.id}`);
      button.addEventListener("click", () => cancelOrder(o.id, button));
      action.append(button);
    }
    tr.push(status, cell(took, "nowrap"), action);
    tr[0].title = o.id;
    return tr;
  });
  rows($("activity"), s.activity || [], (a) => {
    const outcome = cell(a.outcome || (a.error ? "failed" : "–"), "name");
    for (const [on, name, text] of [[a.retried || a.attempt > 1, "retried", `try ${a.attempt}`],
      [a.parked, "parked", "parked"], [a.dead_lettered, "dead", "dead letter"]]) {
      if (!on) continue;
      const mark = document.createElement("span");
      mark.className = `mark ${name}`;
      mark.textContent = text;
      outcome.append(mark);
    }
    if (a.error) outcome.title = a.error;
    return [cell(clock(a.at), "nowrap narrow-hide"), cell(a.handler, "name"), cell(a.event_type, "name narrow-hide"),
      cell(a.order_id ? a.order_id.slice(0, 8) + "…" : "–", "id narrow-hide"), outcome, cell(`${a.duration_ms.toFixed(1)} ms`, "nowrap")];
  });
  rows($("stock"), s.stock || [], (st) => [cell(st.sku), cell(st.available), cell(st.reserved)]);
  $("outbox-pending").textContent = s.outbox.pending;
  $("outbox-oldest").textContent = age(s.outbox.oldest_seconds);
  const groups = (s.streams || []).flatMap((st) =>
    (st.groups || []).map((g) => ({ stream: st.stream, ...g })));
  rows($("streams"), groups, (g) => [cell(g.stream, "name"), cell(g.name, "name"), cell(g.lag), cell(g.pending)]);
  rows($("dead-letters"), s.dead_letters || [], (d) => {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = "Replay";
    button.setAttribute("aria-label", `Replay dead letter ${d.id}`);
    button.addEventListener("click", () => replay(d.id));
    const action = document.createElement("td");
    action.append(button);
    return [cell(new Date(d.at).toLocaleTimeString(), "nowrap"), cell(d.stream, "name"), cell(d.reason), action];
  });
}

// clock is a time of day to the millisecond, in the browser's zone.
function clock(at) {
  const d = new Date(at);
  return `${d.toLocaleTimeString([], { hour12: false })}.${String(d.getMilliseconds()).padStart(3, "0")}`;
}

// An order's story: what the database and Redis hold of it, step by step
// (GET /orders/{id}/story, with the token: every order's, so an
// administrator's).
const stepNames = {
  placed: "placed", written: "in the outbox", on_stream: "on its stream", handled: "handled",
  parked: "parked", dead_lettered: "dead-lettered", redriven: "re-driven", reserved: "stock reserved",
  released: "stock released", settled: "settled", cancelling: "cancelling", cancelled: "cancelled",
};

async function showStory(id) {
  const dialog = $("story");
  $("story-heading").textContent = `Order ${id}`;
  $("story-summary").textContent = "reading…";
  $("story-steps").replaceChildren();
  $("story-missing-box").hidden = true;
  if (!dialog.open) dialog.showModal();
  try {
    const st = await call("GET", `/orders/${encodeURIComponent(id)}/story`);
    const o = st.order;
    $("story-summary").textContent = `${o.status}${o.reason ? ` (${o.reason})` : ""}, customer ${o.customer_id}; ` +
      `correlation id ${st.correlation_id || "–"}`;
    $("story-steps").replaceChildren(...st.steps.map((step, i) => {
      const li = document.createElement("li");
      li.dataset.kind = step.kind;
      const name = document.createElement("span");
      name.className = "step";
      name.textContent = `${stepNames[step.kind] || step.kind}${step.name && step.name !== step.kind ? `: ${step.name}` : ""}`;
      const when = document.createElement("span");
      when.className = "delay";
      when.textContent = ` ${clock(step.at)}${i > 0 ? `, +${step.delay_ms.toFixed(1)} ms` : ""}`;
      const detail = document.createElement("div");
      detail.className = "detail";
      detail.textContent = step.detail;
      li.append(name, when, detail);
      return li;
    }));
    const missing = st.missing || [];
    $("story-missing").replaceChildren(...missing.map((m) => {
      const li = document.createElement("li");
      li.textContent = m;
      return li;
    }));
    $("story-missing-box").hidden = missing.length === 0;
  } catch (err) {
    $("story-summary").textContent = `The story could not be read: ${err.message}`;
  }
}
$("story-close").addEventListener("click", () => $("story").close());

function say(text, isError) {
  $("message").textContent = text;
  $("message").className = isError ? "error" : "";
}

async function call(method, path, body) {
  const headers = { "Content-Type": "application/json" };
  if ($("token").value) headers.Authorization = `Bearer ${$("token").value}`;
  const resp = await fetch(path, { method, headers, body: body && JSON.stringify(body) });
  const data = await resp.json().catch(() => ({}));
  if (!resp.ok) {
    const fields = (data.errors || []).map((e) => `${e.field} ${e.detail}`).join("; ");
    throw new Error(fields || data.detail || `${resp.status}`);
  }
  return data;
}

$("order-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const f = ev.target.elements;
  try {
    const o = await call("POST", "/orders", {
      customer_id: f.customer_id.value,
      items: [{ sku: f.sku.value, quantity: Number(f.quantity.value) }],
    });
    say(`Order ${o.id} placed: ${o.status}`);
  } catch (err) {
    say(`Order not placed: ${err.message}`, true);
  }
});

$("stock-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const f = ev.target.elements;
  try {
    const st = await call("PUT", `/inventory/${encodeURIComponent(f.sku.value)}`,
      { available: Number(f.available.value) });
    say(`${st.sku}: ${st.available} available, ${st.reserved} reserved`);
  } catch (err) {
    say(`Stock not set: ${err.message}`, true);
  }
});

async function cancelOrder(id, button) {
  button.disabled = true;
  try {
    const o = await call("POST", `/orders/${encodeURIComponent(id)}/cancel`, { reason: "cancelled from the live page" });
    say(`Order ${o.id} is ${o.status}`);
  } catch (err) {
    button.disabled = false;
    say(`Order not cancelled: ${err.message}`, true);
  }
}

async function replay(id) {
  try {
    await call("POST", `/deadletters/${encodeURIComponent(id)}/replay`, null);
    say(`Dead letter ${id} replayed`);
  } catch (err) {
    say(`Not replayed: ${err.message}`, true);
  }
}

const source = new EventSource("/events");
source.onopen = () => { $("connection").textContent = "live"; $("connection").className = "live"; };
source.onerror = () => { $("connection").textContent = "reconnecting…"; $("connection").className = "down"; };
source.onmessage = (ev) => render(JSON.parse(ev.data));
readHistory();
