#!/usr/bin/env bash
# The `otlp` cargo feature (off by default, so the main test run never compiles it):
#   - tps-runtime's tests with it: spans made as the api and worker make them reach
#     a local fake collector as one trace over OTLP/HTTP (JSON), flushed on shutdown;
#     a stuck collector never blocks the caller; the OTEL_* variables are honoured;
#   - the api and worker build with it (the feature is forwarded to tps-runtime);
#   - e2e/tests/otlp.rs: those binaries against real NATS, Postgres and Redis and a
#     fake collector, following one order from the api's span to the worker's.
# The binaries are built in the `otlp` cargo profile (target/otlp/), next to the e2e
# test built in the same profile, so the default ones in target/debug/ stay untouched.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
cd "$REPO_ROOT"

log "otlp: tps-runtime tests with --features otlp"
cargo nextest run -p tps-runtime --features otlp --locked
log "otlp: api and worker built with --features otlp"
cargo build --profile otlp -p tps-api -p tps-worker --features otlp --locked
log "otlp: e2e, one order exported by the real binaries"
cargo nextest run --cargo-profile otlp -p tps-e2e --features otlp --locked --test otlp
log "otlp: all checks passed"
