// signup-sustained: sign-ups at a constant arrival rate for DURATION. The teardown
// proves the first VERIFY_SAMPLE sign-ups of the run all became CREATED (the full
// ledger check is the Rust loadtest's job, with --database-url).
import { check } from 'k6';
import exec from 'k6/execution';
import { Counter, Rate, Trend } from 'k6/metrics';
import * as lib from './lib.js';

const RATE = lib.envInt('RATE', 2000);
const DURATION = lib.env('DURATION', '60s');
const MAX_VUS = lib.envInt('MAX_VUS', 800);
const VERIFY_SAMPLE = lib.envInt('VERIFY_SAMPLE', 2000);
const SETTLE_TIMEOUT = lib.envInt('SETTLE_TIMEOUT', 120);
const P99_MS = lib.envInt('P99_MS', 1000);

const started = new Counter('signups_started');
const refused = new Rate('signups_refused'); // still 503 after the retries
const lost = new Counter('signups_lost');
const unsettled = new Counter('signups_unsettled');
const settle = new Trend('signups_settle_seconds');

export const options = {
  scenarios: {
    signup_sustained: {
      executor: 'constant-arrival-rate',
      rate: RATE,
      timeUnit: '1s',
      duration: DURATION,
      preAllocatedVUs: Math.min(MAX_VUS, Math.max(50, Math.ceil(RATE / 4))),
      maxVUs: MAX_VUS,
      tags: { phase: 'load' },
    },
  },
  thresholds: {
    'http_req_duration{route:users}': [`p(99)<${P99_MS}`],
    'http_req_failed{phase:load}': ['rate<0.01'],
    'checks{phase:load}': ['rate>0.99'],
    // Dropped iterations mean the generator or the API could not keep the rate.
    dropped_iterations: [`count<${Math.ceil(RATE)}`],
    signups_refused: ['rate<0.001'],
    signups_lost: ['count==0'],
    signups_unsettled: ['count==0'],
    signups_settle_seconds: [`max<${SETTLE_TIMEOUT}`],
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
  const n = exec.scenario.iterationInTest;
  started.add(1);
  const res = lib.postSignup(lib.signupBody(lib.uuidFor(`signup-${n}`), n), { route: 'users' });
  refused.add(res.status === 503);
  check(res, { 'sign-up answered 202': (r) => r.status === 202 });
}

export function teardown() {
  const t0 = Date.now();
  const ids = [];
  for (let n = 0; n < VERIFY_SAMPLE; n++) ids.push(lib.uuidFor(`signup-${n}`));
  const states = lib.settleSignups(ids, SETTLE_TIMEOUT);
  const count = (s) => Object.values(states).filter((x) => x === s).length;
  const v = { sample: ids.length, created: count('CREATED'), pending: count('PENDING'), rejected: count('REJECTED'), missing: count('MISSING') };
  v.settleSeconds = (Date.now() - t0) / 1000;
  lost.add(v.missing);
  unsettled.add(v.pending);
  settle.add(v.settleSeconds);
  console.log(`TPS_CONSISTENCY ${JSON.stringify(v)}`);
  if (v.missing || v.pending) lib.failRun(`sign-ups missing=${v.missing} pending=${v.pending}`);
}

export function handleSummary(data) {
  return lib.summary(data);
}
