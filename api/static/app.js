// The live page: the catalog (searched, filtered and sorted by GET /v1/tickets)
// with stock pushed over /v1/events, buying, and
// each order moving PENDING -> CONFIRMED/REJECTED as the worker settles it.
// No framework, no build step: served as is by the api.
"use strict";

const $ = (id) => document.getElementById(id);
const orders = new Map(); // order id -> latest known order (from the POST answer or an event)
let token = "";
let socket = null;
let retry = 0;
let pollTimer = null;

function showError(text) { $("error").textContent = text || ""; }

function subjectOf(jwt) {
  try {
    const part = jwt.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part)).sub || "";
  } catch (_) { return ""; }
}

function useToken(value) {
  token = (value || "").trim();
  sessionStorage.setItem("token", token);
  $("token").value = token;
  $("who").textContent = token ? "signed in as " + (subjectOf(token) || "?") : "not signed in: buying and live updates need a token";
  connect();
}

// 32 hex digits from the browser's CSPRNG; works on plain http too, unlike crypto.randomUUID.
function idempotencyKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

async function problemText(response) {
  try { const p = await response.json(); return p.detail || p.title || response.statusText; }
  catch (_) { return response.status + " " + response.statusText; }
}

// ---- tickets ----

function renderTickets(items, isFiltered) {
  const body = $("tickets");
  const shown = Array.from(body.querySelectorAll("tr[data-ticket]"), (row) => row.dataset.ticket);
  if (shown.length > 0 && shown.join() === items.map((t) => t.id).join()) {
    // Same tickets: update the stock in place, so a button being clicked stays in the page.
    for (const t of items) setStock(t.id, t.available, t.soldOut);
    return;
  }
  body.replaceChildren();
  if (items.length === 0) {
    const text = isFiltered ? "no tickets match" : "no tickets yet";
    body.innerHTML = `<tr class="empty"><td colspan="4" class="muted">${text}</td></tr>`;
    return;
  }
  for (const t of items) {
    const row = document.createElement("tr");
    row.dataset.ticket = t.id;
    const name = document.createElement("td");
    name.className = "name";
    name.textContent = t.name;
    const price = document.createElement("td");
    price.className = "num price";
    price.textContent = (t.priceCents / 100).toFixed(2);
    const available = document.createElement("td");
    available.className = "num available";
    const action = document.createElement("td");
    const buy = document.createElement("button");
    buy.className = "buy";
    buy.textContent = "Buy 1";
    buy.addEventListener("click", () => order(t.id, t.name));
    action.append(buy);
    row.append(name, price, available, action);
    body.append(row);
    setStock(t.id, t.available, t.soldOut);
  }
}

function setStock(ticketId, available, soldOut) {
  const row = document.querySelector(`tr[data-ticket="${ticketId}"]`);
  if (!row) return;
  row.querySelector(".available").textContent = soldOut ? "sold out" : String(available);
  row.querySelector("button.buy").disabled = soldOut;
}

// ---- search and filters: every change asks GET /v1/tickets again ----

let loadSeq = 0; // answers to superseded queries are dropped
let loadTimer = null;

// Cents from a price typed in the currency unit ("45" or "45.5"); "" when blank.
function cents(text) {
  const value = text.trim();
  return value === "" ? "" : String(Math.round(Number(value) * 100));
}

// The catalog query the form describes; the api checks every value (400 naming the field).
function catalogParams() {
  const params = new URLSearchParams({ limit: "100" });
  const q = $("q").value.trim();
  if (q) params.set("q", q);
  if ($("available").checked) params.set("available", "true");
  const min = cents($("minPrice").value), max = cents($("maxPrice").value);
  if (min) params.set("minPriceCents", min);
  if (max) params.set("maxPriceCents", max);
  if ($("sort").value) params.set("sort", $("sort").value);
  return params;
}

function filtered(params) { return [...params.keys()].some((k) => k !== "limit"); }

// Typing waits for a pause; a checkbox or a sort applies at once.
function scheduleLoad(delay) {
  clearTimeout(loadTimer);
  loadTimer = setTimeout(loadTickets, delay);
}

async function loadTickets() {
  const seq = ++loadSeq;
  const params = catalogParams();
  try {
    const response = await fetch("/v1/tickets?" + params, { cache: "no-cache" });
    if (seq !== loadSeq) return;
    if (!response.ok) throw new Error(await problemText(response));
    const page = await response.json();
    if (seq !== loadSeq) return;
    if ($("error").textContent.startsWith("catalog: ")) showError("");
    renderTickets(page.items, filtered(params));
    $("summary").textContent = summary(page, params);
  } catch (e) { if (seq === loadSeq) showError("catalog: " + e.message); }
}

function summary(page, params) {
  const n = page.items.length;
  const what = n === 1 ? "1 ticket" : n + " tickets";
  const more = page.nextCursor ? " (the first 100; narrow the search for the rest)" : "";
  return (params.has("q") ? what + " matching \u201c" + params.get("q") + "\u201d" : what) + more;
}

// ---- orders ----

function ticketName(ticketId) {
  const row = document.querySelector(`tr[data-ticket="${ticketId}"] td`);
  return row ? row.textContent : ticketId;
}

function showOrder(o) {
  const known = orders.get(o.id);
  // A settled order never goes back to PENDING, whatever arrives late.
  if (known && known.status !== "PENDING" && o.status === "PENDING") return;
  orders.set(o.id, o);
  const body = $("orders");
  body.querySelector("tr.none")?.remove();
  let row = body.querySelector(`tr[data-order="${o.id}"]`);
  if (!row) {
    row = document.createElement("tr");
    row.dataset.order = o.id;
    row.innerHTML = '<td class="id"></td><td class="ticket"></td><td class="num qty"></td><td class="status"></td>';
    row.querySelector(".id").textContent = o.id.slice(0, 8);
    row.querySelector(".ticket").textContent = ticketName(o.ticketId);
    row.querySelector(".qty").textContent = o.quantity;
    body.prepend(row);
  }
  const status = row.querySelector(".status");
  status.className = "status " + o.status;
  status.textContent = o.status + (o.reason ? " (" + o.reason + ")" : "");
}

async function order(ticketId) {
  showError("");
  if (!token) { showError("paste a token first"); return; }
  const response = await fetch("/v1/orders", {
    method: "POST",
    headers: { "Content-Type": "application/json", "Authorization": "Bearer " + token, "Idempotency-Key": idempotencyKey() },
    body: JSON.stringify({ ticketId, quantity: 1 }),
  });
  if (response.status === 202) {
    const accepted = await response.json();
    // The settled update may have overtaken the 202; showOrder keeps the final one.
    showOrder(orders.get(accepted.id) || { ...accepted, ticketId, quantity: 1 });
  } else if (response.status === 409) {
    const rejected = await response.json();
    showError("sold out: no order was made (" + (rejected.reason || "SOLD_OUT") + ")");
  } else {
    showError("order failed: " + await problemText(response));
  }
}

// Orders still PENDING may have settled while the socket was down.
async function refreshPending() {
  for (const o of orders.values()) {
    if (o.status !== "PENDING") continue;
    const response = await fetch("/v1/orders/" + o.id, { headers: { "Authorization": "Bearer " + token } });
    if (response.ok) showOrder(await response.json());
  }
}

// ---- live updates ----

function setLive(on, text) {
  $("live").className = on ? "on" : "off";
  $("live").textContent = text;
}

function onEvent(event) {
  if (event.type === "ticket.updated") {
    setStock(event.ticketId, event.available, event.soldOut);
    // A ticket that sold out leaves an "available only" list.
    if (event.soldOut && $("available").checked) scheduleLoad(0);
  }
  else if (event.type === "order.updated") showOrder(event.order);
}

function connect() {
  if (socket) { socket.onclose = null; socket.close(); socket = null; }
  clearInterval(pollTimer);
  if (!token) {
    // Without a token there is no stream: poll the catalog (its ETag makes that cheap).
    setLive(false, "polling every 2 s (no token)");
    pollTimer = setInterval(loadTickets, 2000);
    return;
  }
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(`${scheme}//${location.host}/v1/events?token=${encodeURIComponent(token)}`);
  socket = ws;
  ws.onopen = () => { retry = 0; setLive(true, "live"); loadTickets(); refreshPending(); };
  ws.onmessage = (m) => { try { onEvent(JSON.parse(m.data)); } catch (_) { /* not ours */ } };
  ws.onclose = () => {
    if (socket !== ws) return;
    const wait = Math.min(10000, 500 * 2 ** retry++);
    setLive(false, `reconnecting in ${Math.round(wait / 1000)} s`);
    setTimeout(() => { if (socket === ws) connect(); }, wait);
  };
}

// ---- start ----

$("signin").addEventListener("submit", (e) => { e.preventDefault(); useToken($("token").value); });
$("search").addEventListener("submit", (e) => { e.preventDefault(); scheduleLoad(0); });
for (const id of ["q", "minPrice", "maxPrice"]) {
  $(id).addEventListener("input", () => scheduleLoad(250));
  $(id).addEventListener("change", () => scheduleLoad(0));
}
for (const id of ["available", "sort"]) $(id).addEventListener("change", () => scheduleLoad(0));
const fromHash = new URLSearchParams(location.hash.slice(1)).get("token");
if (fromHash) history.replaceState(null, "", location.pathname + location.search); // keep the token out of the address bar
loadTickets().then(() => useToken(fromHash || sessionStorage.getItem("token") || ""));
