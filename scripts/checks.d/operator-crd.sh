#!/usr/bin/env bash
# CRD drift: regenerates the ThroughputService CRD with the operator's crdgen
# binary and fails when crds/ differs from what the Rust types produce.
set -euo pipefail
cd "$(dirname "$0")/../.."
crd=crds/throughputservices.throughput.dev.yaml
generated="$(mktemp)"
trap 'rm -f "$generated"' EXIT
cargo run --quiet --locked -p tps-operator --bin crdgen > "$generated"
if ! diff -u "$crd" "$generated"; then
  echo "$crd is stale: run 'cargo run -p tps-operator --bin crdgen $crd' and commit it" >&2
  exit 1
fi
echo "CRD up to date: $crd"
