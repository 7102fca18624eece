#!/usr/bin/env bash
# The code gates: rustfmt (rustfmt.toml), clippy with every warning an error, no unused
# dependencies (cargo-machete), and one copy each of the HTTP and WebSocket stacks in every
# shipped binary (two tower-http or tungstenite versions would compile, and be patched, twice).
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings

# No dependency a crate does not use (installed once per machine, like cargo-nextest).
if ! cargo machete --version >/dev/null 2>&1; then
  # Its own temporary target dir: the shared one would lose its release dependencies (lib.sh).
  env -u CARGO_TARGET_DIR cargo install --locked cargo-machete --version 0.9.2 >/dev/null
fi
cargo machete

single=(tower-http tungstenite tokio-tungstenite axum hyper tower)
shipped=(-p tps-api -p tps-worker -p tps-operator -p tps-loadtest)
tree=$(cargo tree --locked -q -e normal,build "${shipped[@]}" --prefix none)
for name in "${single[@]}"; do
  versions=$(grep -oE "^$name v[0-9][^ ]*" <<<"$tree" | sed "s/^$name //" | sort -u | tr '\n' ' ' || true)
  if [ "$(wc -w <<<"$versions")" -gt 1 ]; then
    echo "lint: the api, worker, operator and loadtest link more than one $name: $versions" >&2
    exit 1
  fi
done
echo "lint: one copy each of ${single[*]} across the api, worker, operator and loadtest"
