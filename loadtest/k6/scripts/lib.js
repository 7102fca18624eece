// Shared helpers of the k6 scenarios: configuration from the environment,
// HS256 tokens, the API calls, and the end-of-run summary the Job prints.
import http from 'k6/http';
import crypto from 'k6/crypto';
import encoding from 'k6/encoding';
import exec from 'k6/execution';
import { sleep } from 'k6';

/** Reads an environment variable, with a default. */
export function env(name, fallback) {
  const value = __ENV[name];
  return value === undefined || value === '' ? fallback : value;
}

/** Reads a numeric environment variable, with a default. */
export function envInt(name, fallback) {
  const value = Number(env(name, fallback));
  if (!Number.isFinite(value)) throw new Error(`${name} must be a number`);
  return value;
}

export const BASE_URL = env('BASE_URL', 'http://flash-sale-api.shop.svc').replace(/\/$/, '');
// Every run gets its own users, ticket names and sign-up ids, so runs never see each other.
export const RUN_ID = env('RUN_ID', `k6-${Date.now().toString(36)}`);
const JWT_SECRET = env('AUTH_JWT_SECRET', '');

function b64url(text) {
  return encoding.b64encode(text, 'rawurl');
}

/** A HS256 JWT with `sub`, `exp` (one hour) and optionally `scope`, as CONTRACT.md says. */
export function token(sub, scope) {
  if (!JWT_SECRET) throw new Error('AUTH_JWT_SECRET is empty: the Job reads it from the tps-auth Secret');
  const claims = { sub, exp: Math.floor(Date.now() / 1000) + 3600 };
  if (scope) claims.scope = scope;
  const unsigned = `${b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }))}.${b64url(JSON.stringify(claims))}`;
  return `${unsigned}.${crypto.hmac('sha256', JWT_SECRET, unsigned, 'base64rawurl')}`;
}

// Tokens are signed once per user and VU: signing is not what we measure.
const tokens = {};
export function userToken(user) {
  if (!tokens[user]) tokens[user] = token(user);
  return tokens[user];
}

/** The user id of index i of this run; the teardown derives the same ids. */
export function userId(i) {
  return `${RUN_ID}-u${i}`;
}

export function authHeaders(bearer, extra) {
  return Object.assign({ Authorization: `Bearer ${bearer}`, 'Content-Type': 'application/json' }, extra || {});
}

/** GET with a bearer token, JSON-decoded (null when the body is not JSON). */
export function getJson(path, bearer, tags) {
  const res = http.get(`${BASE_URL}${path}`, {
    headers: bearer ? authHeaders(bearer) : {},
    tags: Object.assign({ name: path.replace(/\?.*$/, '') }, tags || {}),
  });
  let body = null;
  try {
    body = res.json();
  } catch (_) {
    body = null;
  }
  return { res, body };
}

/** Creates the tickets of a run through the admin route; returns their ids. */
export function createTickets(count, totalQuantity, maxPerOrder) {
  const admin = token(`${RUN_ID}-admin`, 'admin');
  const ids = [];
  for (let i = 0; i < count; i++) {
    const res = http.post(
      `${BASE_URL}/v1/tickets`,
      JSON.stringify({ name: `${RUN_ID} ticket ${i}`, totalQuantity, priceCents: 4200, maxPerOrder }),
      { headers: authHeaders(admin), tags: { name: 'POST /v1/tickets', phase: 'setup' } },
    );
    if (res.status !== 201) throw new Error(`POST /v1/tickets answered ${res.status}: ${res.body}`);
    ids.push(res.json('id'));
  }
  return ids;
}

/** Waits until the API answers /readyz, so a run never starts against a cold fleet. */
export function waitReady(seconds) {
  for (let i = 0; i < seconds; i++) {
    const res = http.get(`${BASE_URL}/readyz`, { tags: { name: 'GET /readyz', phase: 'setup' } });
    if (res.status === 200) return;
    sleep(1);
  }
  throw new Error(`${BASE_URL}/readyz not ready after ${seconds}s`);
}

/** Every order of a user, following the keyset cursor. */
export function listOrders(user) {
  const bearer = userToken(user);
  const orders = [];
  let cursor = '';
  for (let page = 0; page < 1000; page++) {
    const q = cursor ? `?limit=100&cursor=${encodeURIComponent(cursor)}` : '?limit=100';
    const { res, body } = getJson(`/v1/orders${q}`, bearer, { phase: 'verify' });
    if (res.status !== 200 || !body) throw new Error(`GET /v1/orders for ${user} answered ${res.status}`);
    orders.push(...(body.items || []));
    if (!body.nextCursor) break;
    cursor = body.nextCursor;
  }
  return orders;
}

/** A UUID v4 from k6's CSPRNG. */
export function uuid4() {
  const b = new Uint8Array(crypto.randomBytes(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const hex = Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** A deterministic UUID (v4 layout) for a name, so the teardown can find what the VUs created. */
export function uuidFor(name) {
  const hex = crypto.sha256(`${RUN_ID}/${name}`, 'hex');
  const variant = ((parseInt(hex[16], 16) & 0x3) | 0x8).toString(16);
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-${variant}${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
}

/** A sign-up body of CONTRACT.md for the given id. */
export function signupBody(id, n) {
  return {
    id,
    name: `k6 user ${n}`,
    email: `${id}@k6.example.com`,
    age: 18 + (n % 60),
    score: (n * 7919) % 1000,
    active: n % 2 === 0,
    country: ['DE', 'FR', 'US', 'JP', 'BR'][n % 5],
    team: { name: `team ${n % 50}`, leader: n % 10 === 0, projects: [{ name: 'launch', completed: n % 3 === 0 }] },
    logs: [{ date: new Date().toISOString(), action: 'login' }],
  };
}

/** Sends one sign-up, retrying a 503 after its Retry-After like a real client. Returns the last response. */
export function postSignup(body, tags) {
  let res;
  for (let attempt = 0; attempt < 4; attempt++) {
    res = http.post(`${BASE_URL}/v1/users`, JSON.stringify(body), {
      headers: { 'Content-Type': 'application/json' },
      tags: Object.assign({ name: 'POST /v1/users' }, tags || {}),
      responseCallback: http.expectedStatuses(202),
    });
    if (res.status !== 503) return res;
    sleep(Math.min(Number(res.headers['Retry-After']) || 1, 5));
  }
  return res;
}

/** Polls sign-ups until none is PENDING or the deadline passes; returns the final states by id. */
export function settleSignups(ids, timeoutSeconds) {
  const deadline = Date.now() + timeoutSeconds * 1000;
  const states = {};
  let pending = ids.slice();
  while (pending.length > 0) {
    const still = [];
    for (const id of pending) {
      const { res, body } = getJson(`/v1/users/${id}`, null, { phase: 'verify', name: 'GET /v1/users/{id}' });
      states[id] = res.status === 404 ? 'MISSING' : body && body.status;
      if (states[id] === 'PENDING') still.push(id);
    }
    pending = still;
    if (pending.length === 0 || Date.now() > deadline) break;
    sleep(2);
  }
  return states;
}

/** Marks the run failed (the Job fails with it) and says why. */
export function failRun(reason) {
  console.error(`CONSISTENCY FAILURE: ${reason}`);
  exec.test.fail(reason);
}

// --- summary ---------------------------------------------------------------------

function fmt(v) {
  return typeof v === 'number' ? (Number.isInteger(v) ? String(v) : v.toFixed(2)) : String(v);
}

/**
 * The end-of-run summary: a readable table on stdout, and one `TPS_SUMMARY {json}`
 * line that scripts/kind-e2e parses (thresholds, consistency counters).
 */
export function summary(data) {
  const lines = [`\n${RUN_ID}: ${env('SCENARIO', '?')} against ${BASE_URL}`];
  const compact = { runId: RUN_ID, scenario: env('SCENARIO', '?'), thresholds: {}, metrics: {} };
  let ok = true;
  for (const [name, metric] of Object.entries(data.metrics)) {
    const values = Object.entries(metric.values).map(([k, v]) => `${k}=${fmt(v)}`).join(' ');
    lines.push(`  ${name.padEnd(44)} ${values}`);
    compact.metrics[name] = metric.values;
    for (const [expr, result] of Object.entries(metric.thresholds || {})) {
      compact.thresholds[`${name}: ${expr}`] = result.ok;
      ok = ok && result.ok;
      lines.push(`    ${result.ok ? 'PASS' : 'FAIL'} ${expr}`);
    }
  }
  compact.thresholdsOk = ok;
  lines.push(`thresholds: ${ok ? 'all passed' : 'FAILED'}`);
  lines.push(`TPS_SUMMARY ${JSON.stringify(compact)}`);
  return { stdout: `${lines.join('\n')}\n` };
}

// --- order consistency -------------------------------------------------------------

/**
 * Checks the orders of a run through the API, after the load: waits until no order of
 * the run's users is PENDING, then compares each ticket's stock with its confirmed
 * orders. Returns the verdicts; the caller adds them to its threshold counters.
 *   oversold: units confirmed beyond stock, or a negative `available`;
 *   lost:     202'd orders still PENDING at the deadline, plus units whose decrement
 *             and confirmed order disagree (one without the other);
 *   unsold:   stock left on a ticket that rejected orders for lack of stock
 *             (with quantity 1, demand beyond stock must sell every ticket).
 */
export function verifyOrders(ticketIds, users, settleTimeoutSeconds, quantityIsOne) {
  const started = Date.now();
  const deadline = started + settleTimeoutSeconds * 1000;
  const byUser = {};
  let waiting = [];
  for (let i = 0; i < users; i++) waiting.push(userId(i));
  while (waiting.length > 0) {
    const still = [];
    for (const user of waiting) {
      byUser[user] = listOrders(user);
      if (byUser[user].some((o) => o.status === 'PENDING')) still.push(user);
    }
    waiting = still;
    if (waiting.length === 0 || Date.now() > deadline) break;
    sleep(2);
  }
  const settleSeconds = (Date.now() - started) / 1000;
  sleep(1.5); // `available` may lag the truth by up to 1 s

  const tickets = {};
  for (const id of ticketIds) tickets[id] = { confirmed: 0, rejectedForStock: 0 };
  const seen = {};
  let pending = 0;
  let duplicates = 0;
  for (const orders of Object.values(byUser)) {
    for (const o of orders) {
      if (seen[o.id]) duplicates++;
      seen[o.id] = true;
      const t = tickets[o.ticketId];
      if (!t) continue;
      if (o.status === 'PENDING') pending++;
      if (o.status === 'CONFIRMED') t.confirmed += o.quantity;
      if (o.status === 'REJECTED' && (o.reason === 'SOLD_OUT' || o.reason === 'INSUFFICIENT_STOCK')) t.rejectedForStock++;
    }
  }
  const verdict = { oversold: 0, lost: pending, unsold: 0, duplicates, pending, settleSeconds, tickets: {} };
  for (const id of ticketIds) {
    const { res, body } = getJson(`/v1/tickets/${id}`, null, { phase: 'verify', name: 'GET /v1/tickets/{id}' });
    if (res.status !== 200 || !body) throw new Error(`GET /v1/tickets/${id} answered ${res.status}`);
    const t = tickets[id];
    const sold = body.totalQuantity - body.available;
    verdict.oversold += Math.max(0, t.confirmed - body.totalQuantity, -body.available);
    verdict.lost += Math.abs(sold - t.confirmed);
    if (quantityIsOne && t.rejectedForStock > 0) verdict.unsold += Math.max(0, body.available);
    verdict.tickets[id] = { total: body.totalQuantity, available: body.available, sold, confirmed: t.confirmed, soldOut: body.soldOut };
  }
  checkListing(ticketIds, verdict);
  return verdict;
}

/** The listing agrees: every ticket of the run shows a non-negative `available`. */
function checkListing(ticketIds, verdict) {
  const wanted = new Set(ticketIds);
  let cursor = '';
  for (let page = 0; page < 100 && wanted.size > 0; page++) {
    const q = cursor ? `?limit=100&cursor=${encodeURIComponent(cursor)}` : '?limit=100';
    const { res, body } = getJson(`/v1/tickets${q}`, null, { phase: 'verify', name: 'GET /v1/tickets' });
    if (res.status !== 200 || !body) throw new Error(`GET /v1/tickets answered ${res.status}`);
    for (const item of body.items || []) {
      if (!wanted.has(item.id)) continue;
      wanted.delete(item.id);
      if (item.available < 0) verdict.oversold += -item.available;
      if (item.soldOut !== (item.available === 0)) console.warn(`ticket ${item.id}: soldOut=${item.soldOut} with available=${item.available}`);
    }
    if (!body.nextCursor) break;
    cursor = body.nextCursor;
  }
}
