// signup-burst: VUS sign-ups, one per VU, all sent at once as simultaneous
// connections. The teardown proves every 202 became CREATED, and how fast.
import { check } from 'k6';
import exec from 'k6/execution';
import { Counter, Trend } from 'k6/metrics';
import * as lib from './lib.js';

const VUS = lib.envInt('VUS', 1000);
const SETTLE_TIMEOUT = lib.envInt('SETTLE_TIMEOUT', 60);
const SETTLE_TARGET = lib.envInt('SETTLE_TARGET', 20); // seconds from the last answer (issue 3)
const P99_MS = lib.envInt('P99_MS', 2000);

const lost = new Counter('signups_lost');
const unsettled = new Counter('signups_unsettled');
const rejected = new Counter('signups_rejected');
const settle = new Trend('signups_settle_seconds');

export const options = {
  scenarios: {
    signup_burst: { executor: 'per-vu-iterations', vus: VUS, iterations: 1, maxDuration: '5m', tags: { phase: 'load' } },
  },
  thresholds: {
    'http_req_duration{route:users}': [`p(99)<${P99_MS}`],
    'http_req_failed{phase:load}': ['rate==0'],
    'checks{phase:load}': ['rate==1'],
    signups_lost: ['count==0'],
    signups_unsettled: ['count==0'],
    signups_rejected: ['count==0'],
    signups_settle_seconds: [`max<${SETTLE_TARGET}`],
  },
  setupTimeout: '180s',
  teardownTimeout: `${SETTLE_TIMEOUT + 600}s`,
  summaryTrendStats: ['avg', 'p(50)', 'p(90)', 'p(99)', 'p(99.9)', 'max'],
};

export function setup() {
  lib.waitReady(120);
  return {};
}

export default function () {
  const n = exec.vu.idInTest;
  const res = lib.postSignup(lib.signupBody(lib.uuidFor(`signup-${n}`), n), { route: 'users' });
  check(res, { 'sign-up answered 202 PENDING': (r) => r.status === 202 && r.json('status') === 'PENDING' });
}

export function teardown() {
  const started = Date.now();
  const ids = [];
  for (let n = 1; n <= VUS; n++) ids.push(lib.uuidFor(`signup-${n}`));
  const states = lib.settleSignups(ids, SETTLE_TIMEOUT);
  const count = (s) => Object.values(states).filter((x) => x === s).length;
  const v = { created: count('CREATED'), pending: count('PENDING'), rejected: count('REJECTED'), missing: count('MISSING') };
  v.settleSeconds = (Date.now() - started) / 1000;
  lost.add(v.missing);
  unsettled.add(v.pending);
  rejected.add(v.rejected);
  settle.add(v.settleSeconds);
  console.log(`TPS_CONSISTENCY ${JSON.stringify(v)}`);
  if (v.missing || v.pending || v.rejected) lib.failRun(`sign-ups missing=${v.missing} pending=${v.pending} rejected=${v.rejected}`);
}

export function handleSummary(data) {
  return lib.summary(data);
}
