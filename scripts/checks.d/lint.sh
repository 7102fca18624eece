#!/usr/bin/env bash
# The code gates: rustfmt (rustfmt.toml) and clippy with every warning an error.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
