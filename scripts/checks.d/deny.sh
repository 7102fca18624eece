#!/usr/bin/env bash
# Dependency policy via cargo-deny, offline: RustSec advisories (against a dated snapshot of the
# advisory database), licenses, banned crates and sources.
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v cargo-deny >/dev/null; then
  echo "installing cargo-deny" >&2
  # Its own temporary target dir: the shared one would lose its release dependencies (lib.sh).
  env -u CARGO_TARGET_DIR cargo install --locked cargo-deny >/dev/null 2>&1
fi

# cargo-deny reads its database as a git checkout under db-path (deny.toml), in a directory named
# after the database URL; the live one cannot be fetched here, so the snapshot is copied there and
# committed once per snapshot.
snapshot="${TPS_ADVISORY_DB:-$(cd .. && pwd)/shared/advisory-db}"
checks=(licenses bans sources)
if [ -f "$snapshot/SNAPSHOT" ] && [ -d "$snapshot/crates" ]; then
  db=/var/tmp/tps-advisory-db/advisory-db-3157b0e258782691 # the directory cargo-deny derives from the URL
  if ! cmp -s "$snapshot/SNAPSHOT" "$db/SNAPSHOT" || ! git -C "$db" rev-parse -q --verify HEAD >/dev/null 2>&1; then
    rm -rf "$db" && mkdir -p "$db" && cp -r "$snapshot/." "$db/"
    git -C "$db" init -q && git -C "$db" add -A
    git -C "$db" -c user.name=tps -c user.email=tps@localhost commit -qm "$(head -1 "$snapshot/SNAPSHOT")"
  fi
  echo "advisories: $(head -1 "$snapshot/SNAPSHOT")" >&2
  checks=(advisories "${checks[@]}")
else
  echo "WARNING: no RustSec snapshot at $snapshot (set TPS_ADVISORY_DB); advisories NOT checked" >&2
fi
# cargo-deny reads `cargo metadata` for every platform, offline: fetch the crates of other targets
# too (wasm-bindgen, android_system_properties, ...), which a build on this host never downloads.
cargo fetch --locked --quiet
cargo deny --offline check "${checks[@]}"
