// read-mix: the catalog under read load (listing, search, single tickets) with a
// small share of orders. The teardown checks the orders' tickets for oversell.
import http from 'k6/http';
import { check } from 'k6';
import exec from 'k6/execution';
import { Counter, Trend } from 'k6/metrics';
import * as lib from './lib.js';

const RATE = lib.envInt('RATE', 2000);
const DURATION = lib.env('DURATION', '60s');
const USERS = lib.envInt('USERS', 500);
const TICKETS = lib.envInt('TICKETS', 20);
const STOCK = lib.envInt('STOCK', 1000000);
const ORDER_PERCENT = lib.envInt('ORDER_PERCENT', 5);
const MAX_VUS = lib.envInt('MAX_VUS', 600);
const SETTLE_TIMEOUT = lib.envInt('SETTLE_TIMEOUT', 120);
const READ_P99_MS = lib.envInt('READ_P99_MS', 250);
const P99_MS = lib.envInt('P99_MS', 1000);

const oversold = new Counter('tps_oversold');
const lost = new Counter('tps_lost');
const settle = new Trend('tps_settle_seconds');

export const options = {
  scenarios: {
    read_mix: {
      executor: 'constant-arrival-rate',
      rate: RATE,
      timeUnit: '1s',
      duration: DURATION,
      preAllocatedVUs: Math.min(MAX_VUS, Math.max(50, Math.ceil(RATE / 8))),
      maxVUs: MAX_VUS,
      tags: { phase: 'load' },
    },
  },
  thresholds: {
    'http_req_duration{route:list}': [`p(99)<${READ_P99_MS}`],
    'http_req_duration{route:get}': [`p(99)<${READ_P99_MS}`],
    'http_req_duration{route:orders}': [`p(99)<${P99_MS}`],
    'http_req_failed{phase:load}': ['rate<0.01'],
    'checks{phase:load}': ['rate>0.99'],
    tps_oversold: ['count==0'],
    tps_lost: ['count==0'],
  },
  setupTimeout: '180s',
  teardownTimeout: `${SETTLE_TIMEOUT + 300}s`,
  summaryTrendStats: ['avg', 'p(50)', 'p(90)', 'p(99)', 'p(99.9)', 'max'],
};

export function setup() {
  lib.waitReady(120);
  return { tickets: lib.createTickets(TICKETS, STOCK, 5) };
}

export default function (data) {
  const i = exec.scenario.iterationInTest;
  const roll = i % 100;
  const ticketId = data.tickets[i % data.tickets.length];
  let res;
  if (roll < ORDER_PERCENT) {
    res = http.post(`${lib.BASE_URL}/v1/orders`, JSON.stringify({ ticketId, quantity: 1 }), {
      headers: lib.authHeaders(lib.userToken(lib.userId(i % USERS)), { 'Idempotency-Key': `${lib.RUN_ID}-${i}` }),
      tags: { name: 'POST /v1/orders', route: 'orders' },
      responseCallback: http.expectedStatuses(202, 409),
    });
    check(res, { 'order answered 202 or 409': (r) => r.status === 202 || r.status === 409 });
  } else if (roll < 70) {
    // Mostly the first page, the one a storefront shows; sometimes a search.
    const q = roll % 10 === 0 ? `&q=${encodeURIComponent('ticket')}` : '';
    res = http.get(`${lib.BASE_URL}/v1/tickets?limit=20${q}`, { tags: { name: 'GET /v1/tickets', route: 'list' } });
    check(res, { 'listing answered 200 with items': (r) => r.status === 200 && Array.isArray(r.json('items')) });
  } else {
    res = http.get(`${lib.BASE_URL}/v1/tickets/${ticketId}`, { tags: { name: 'GET /v1/tickets/{id}', route: 'get' } });
    check(res, { 'ticket answered 200': (r) => r.status === 200 && r.json('id') === ticketId });
  }
}

export function teardown(data) {
  const v = lib.verifyOrders(data.tickets, USERS, SETTLE_TIMEOUT, false);
  oversold.add(v.oversold);
  lost.add(v.lost);
  settle.add(v.settleSeconds);
  console.log(`TPS_CONSISTENCY ${JSON.stringify(v)}`);
  if (v.oversold || v.lost) lib.failRun(`oversold=${v.oversold} lost=${v.lost}`);
}

export function handleSummary(data) {
  return lib.summary(data);
}
