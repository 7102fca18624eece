// flash-sale: USERS buyers fire order requests at a constant arrival rate for
// TICKETS tickets of STOCK each, far beyond stock. The teardown proves, through the
// API, that nothing was oversold or lost and that every ticket was sold.
import http from 'k6/http';
import { check } from 'k6';
import exec from 'k6/execution';
import { Counter, Rate, Trend } from 'k6/metrics';
import * as lib from './lib.js';

const RATE = lib.envInt('RATE', 1000); // order requests per second
const DURATION = lib.env('DURATION', '60s');
const USERS = lib.envInt('USERS', 2000);
const TICKETS = lib.envInt('TICKETS', 4);
const STOCK = lib.envInt('STOCK', 5000); // per ticket: 20,000 in all against 60,000 requests
const QUANTITY = lib.envInt('QUANTITY', 1);
const MAX_VUS = lib.envInt('MAX_VUS', 800);
const SETTLE_TIMEOUT = lib.envInt('SETTLE_TIMEOUT', 120);
const P99_MS = lib.envInt('P99_MS', 1000);

const accepted = new Counter('orders_accepted');
const unavailable = new Rate('orders_unavailable'); // 503: the command could not be stored
const replayMismatch = new Counter('idempotency_mismatch');
const oversold = new Counter('tps_oversold');
const lost = new Counter('tps_lost');
const unsold = new Counter('tps_unsold');
const duplicates = new Counter('tps_duplicate_orders');
const settle = new Trend('tps_settle_seconds');

export const options = {
  scenarios: {
    flash_sale: {
      executor: 'constant-arrival-rate',
      rate: RATE,
      timeUnit: '1s',
      duration: DURATION,
      preAllocatedVUs: Math.min(MAX_VUS, Math.max(50, Math.ceil(RATE / 4))),
      maxVUs: MAX_VUS,
      tags: { phase: 'load' },
    },
  },
  // Any failed threshold makes k6 exit non-zero, and so fails the Job.
  thresholds: {
    'http_req_duration{route:orders}': [`p(99)<${P99_MS}`],
    'http_req_failed{phase:load}': ['rate<0.01'], // 202 and 409 SOLD_OUT are expected answers
    'checks{phase:load}': ['rate>0.99'],
    orders_accepted: ['count>0'],
    orders_unavailable: ['rate<0.01'],
    idempotency_mismatch: ['count==0'],
    tps_oversold: ['count==0'],
    tps_lost: ['count==0'],
    tps_unsold: ['count==0'],
    tps_duplicate_orders: ['count==0'],
    tps_settle_seconds: [`max<${SETTLE_TIMEOUT}`],
  },
  setupTimeout: '180s',
  teardownTimeout: `${SETTLE_TIMEOUT + 600}s`,
  summaryTrendStats: ['avg', 'p(50)', 'p(90)', 'p(99)', 'p(99.9)', 'max'],
};

export function setup() {
  lib.waitReady(120);
  return { tickets: lib.createTickets(TICKETS, STOCK, Math.max(QUANTITY, 5)) };
}

function order(bearer, key, body) {
  return http.post(`${lib.BASE_URL}/v1/orders`, body, {
    headers: lib.authHeaders(bearer, { 'Idempotency-Key': key }),
    tags: { name: 'POST /v1/orders', route: 'orders' },
    responseCallback: http.expectedStatuses(202, 409),
  });
}

export default function (data) {
  const i = exec.scenario.iterationInTest;
  const bearer = lib.userToken(lib.userId(i % USERS));
  const key = `${lib.RUN_ID}-${i}`;
  const body = JSON.stringify({ ticketId: data.tickets[i % data.tickets.length], quantity: QUANTITY });
  const res = order(bearer, key, body);
  accepted.add(res.status === 202 ? 1 : 0);
  unavailable.add(res.status === 503);
  check(res, {
    'order answered 202 or 409': (r) => r.status === 202 || r.status === 409,
    '202 is PENDING with a Location': (r) => r.status !== 202 || (r.json('status') === 'PENDING' && !!r.headers.Location),
  });
  // One request in a hundred is retried like a client that lost the answer: the
  // same key and body must give back the same order, marked as a replay.
  if (res.status === 202 && i % 100 === 0) {
    const again = order(bearer, key, body);
    const same = again.status === 202 && again.json('id') === res.json('id') && again.headers['Idempotent-Replayed'] === 'true';
    replayMismatch.add(same ? 0 : 1);
  }
}

export function teardown(data) {
  const v = lib.verifyOrders(data.tickets, USERS, SETTLE_TIMEOUT, QUANTITY === 1);
  oversold.add(v.oversold);
  lost.add(v.lost);
  unsold.add(v.unsold);
  duplicates.add(v.duplicates);
  settle.add(v.settleSeconds);
  replayMismatch.add(0);
  console.log(`TPS_CONSISTENCY ${JSON.stringify(v)}`);
  if (v.oversold || v.lost || v.unsold || v.duplicates) lib.failRun(`oversold=${v.oversold} lost=${v.lost} unsold=${v.unsold} duplicates=${v.duplicates}`);
}

export function handleSummary(data) {
  return lib.summary(data);
}
