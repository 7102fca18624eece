# syntax=docker/dockerfile:1.7
# One image for every binary of the workspace: api, worker, tps-operator, loadtest.
# Why one image: a ThroughputService names a single `image` and the operator runs
# `api` or `worker` from it, so the two can never drift apart on the wire contract;
# the binaries share almost all their dependencies, so one build and one cached
# dependency layer serve all four, and the nodes pull one set of layers.
#
#   docker build -t tps:dev .                  # runtime: distroless, non-root, no shell
#   docker build -t tps:dev-shell --target dev .   # the same binaries with a shell
#   docker build --build-arg CARGO_FEATURES="tps-api/otlp,tps-worker/otlp" -t tps:otlp .
#                                              # with OTLP span export (docs/observability.md)
#
# Stages: chef (cargo-chef) -> planner (dependency recipe) -> builder (dependencies
# cooked in their own layer, cached until Cargo.lock or a manifest changes; then the
# workspace) -> runtime / dev.

ARG RUST_VERSION=1.95
ARG DEBIAN=bookworm

FROM rust:${RUST_VERSION}-${DEBIAN} AS chef
RUN cargo install cargo-chef --locked --version "^0.1"
WORKDIR /src

# The recipe lists only manifests and the lock file, so it changes only with them.
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
ARG BINS="api worker tps-operator loadtest"
# Cargo features, package-qualified and comma-separated; empty: the defaults.
ARG CARGO_FEATURES=""
COPY --from=planner /src/recipe.json recipe.json
# Dependencies only: this layer stays cached across source edits.
RUN cargo chef cook --release --locked --recipe-path recipe.json ${CARGO_FEATURES:+--features "$CARGO_FEATURES"}
COPY . .
RUN set -eu; \
    cargo build --release --locked ${CARGO_FEATURES:+--features "$CARGO_FEATURES"} \
      $(for b in $BINS; do printf -- '--bin %s ' "$b"; done); \
    mkdir -p /out; \
    for b in $BINS; do cp "target/release/$b" /out/; done

# A shell, curl and the binaries: for debugging in a cluster (`kubectl exec`).
FROM debian:${DEBIAN}-slim AS dev
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 65532 nonroot \
 && useradd --uid 65532 --gid 65532 --no-create-home --shell /usr/sbin/nologin nonroot
COPY --from=builder /out/ /usr/local/bin/
USER 65532:65532
ENV API_LISTEN=0.0.0.0:8080 METRICS_LISTEN=0.0.0.0:9090
EXPOSE 8080 9090
ENTRYPOINT ["api"]

# The default target. distroless/cc: glibc, libgcc, CA certificates and nothing else;
# the nonroot variant runs as UID 65532, the UID the operator and the chart set.
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
COPY --from=builder /out/ /usr/local/bin/
USER 65532:65532
ENV API_LISTEN=0.0.0.0:8080 METRICS_LISTEN=0.0.0.0:9090
EXPOSE 8080 9090
# The operator and the chart always set the command (api, worker or tps-operator).
ENTRYPOINT ["api"]
