#!/usr/bin/env bash
# Dependency policy: licenses, banned crates and sources, via cargo-deny (offline).
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v cargo-deny >/dev/null; then
  echo "installing cargo-deny" >&2
  cargo install --locked cargo-deny >/dev/null 2>&1
fi
cargo deny check licenses bans sources
